//! `lavabox query ...`: saved result queries, made on the command line where LAVA has its
//! query editor. Conditions are LAVA's condition strings, checked by the same parser as
//! `results.make_custom_query` (`store::QuerySpec`) before anything is stored.

use std::io::Write;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::store::{NewSavedQuery, QuerySpec, SavedQuery, Store};

/// `lavabox query ...`
#[derive(Debug, Subcommand)]
pub enum QueryCommand {
    /// Save a query (LAVA's Query: owner, name, entity, conditions).
    Add(QueryAdd),
    /// List saved queries.
    List,
    /// Show one saved query.
    Show {
        /// Owner's username.
        owner: String,
        /// Query name.
        name: String,
    },
    /// Remove a saved query.
    Remove {
        /// Owner's username.
        owner: String,
        /// Query name.
        name: String,
    },
}

/// Arguments of `query add`.
#[derive(Debug, Args)]
pub struct QueryAdd {
    /// Owner's username.
    pub owner: String,
    /// Name, unique per owner (letters, digits, `-`, `_`).
    pub name: String,
    /// What the query returns: testjob, testsuite or testcase.
    #[arg(long, default_value = "testjob")]
    pub entity: String,
    /// LAVA condition string, e.g. `testjob__health__exact__Complete,testjob__submitter__exact__alice`.
    #[arg(long, default_value = "")]
    pub conditions: String,
    /// Free text.
    #[arg(long, default_value = "")]
    pub description: String,
    /// A group whose members may run and refresh the query like its owner.
    #[arg(long)]
    pub group: Option<String>,
    /// Mark the query published.
    #[arg(long)]
    pub published: bool,
    /// Make it a live query: no results limit, and refresh_query refuses it.
    #[arg(long)]
    pub live: bool,
    /// Mark it archived.
    #[arg(long)]
    pub archived: bool,
    /// Results limit (at least 20).
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub limit: u32,
}

/// Runs one `query` command.
pub(super) fn run(
    store: &mut Store,
    out: &mut impl Write,
    cmd: QueryCommand,
) -> anyhow::Result<()> {
    match cmd {
        QueryCommand::Add(add) => {
            let spec = QuerySpec::parse(&add.entity, &add.conditions).with_context(|| {
                format!(
                    "checking the conditions of query ~{}/{}",
                    add.owner, add.name
                )
            })?;
            let new = NewSavedQuery {
                description: add.description,
                group: add.group,
                is_published: add.published,
                is_live: add.live,
                is_archived: add.archived,
                limit: add.limit,
                ..NewSavedQuery::new(add.owner, add.name, spec)
            };
            let query = store
                .add_saved_query(&new)
                .with_context(|| format!("adding query ~{}/{}", new.owner, new.name))?;
            writeln!(out, "query ~{}/{} created", query.owner, query.name)?;
        }
        QueryCommand::List => {
            let rows = store
                .saved_queries()
                .context("listing saved queries")?
                .into_iter()
                .map(|q| {
                    vec![
                        q.owner,
                        q.name,
                        q.spec.entity().to_string(),
                        flags(q.is_published, q.is_live, q.is_archived),
                        q.spec.text().to_owned(),
                    ]
                })
                .collect();
            super::table::table(
                out,
                &["OWNER", "NAME", "ENTITY", "FLAGS", "CONDITIONS"],
                rows,
            )?;
        }
        QueryCommand::Show { owner, name } => {
            let query = store
                .saved_query(&owner, &name)
                .with_context(|| format!("reading query ~{owner}/{name}"))?
                .with_context(|| format!("query ~{owner}/{name} does not exist"))?;
            show(out, &query)?;
        }
        QueryCommand::Remove { owner, name } => {
            store
                .remove_saved_query(&owner, &name)
                .with_context(|| format!("removing query ~{owner}/{name}"))?;
            writeln!(out, "query ~{owner}/{name} removed")?;
        }
    }
    Ok(())
}

/// `published,live,archived` (those set), or `-`.
fn flags(published: bool, live: bool, archived: bool) -> String {
    let set: Vec<&str> = [
        (published, "published"),
        (live, "live"),
        (archived, "archived"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect();
    if set.is_empty() {
        "-".to_owned()
    } else {
        set.join(",")
    }
}

fn show(out: &mut impl Write, q: &SavedQuery) -> std::io::Result<()> {
    let time = |t: Option<time::OffsetDateTime>| {
        t.map_or("never".to_owned(), |t| crate::pyfmt::py_isoformat(t, ' '))
    };
    writeln!(out, "owner: {}", q.owner)?;
    writeln!(out, "name: {}", q.name)?;
    writeln!(out, "description: {}", q.description)?;
    writeln!(out, "entity: {}", q.spec.entity())?;
    writeln!(out, "conditions: {}", q.spec.text())?;
    writeln!(out, "group: {}", q.group.as_deref().unwrap_or("-"))?;
    writeln!(
        out,
        "flags: {}",
        flags(q.is_published, q.is_live, q.is_archived)
    )?;
    writeln!(out, "limit: {}", q.limit)?;
    writeln!(out, "created: {}", time(Some(q.created)))?;
    writeln!(out, "last updated: {}", time(q.last_updated))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewUser;

    fn run_ok(store: &mut Store, cmd: QueryCommand) -> String {
        let mut out = Vec::new();
        run(store, &mut out, cmd).expect("command");
        String::from_utf8(out).expect("utf-8")
    }

    fn add(owner: &str, name: &str, conditions: &str) -> QueryCommand {
        QueryCommand::Add(QueryAdd {
            owner: owner.into(),
            name: name.into(),
            entity: "testjob".into(),
            conditions: conditions.into(),
            description: "nightly".into(),
            group: None,
            published: true,
            live: false,
            archived: false,
            limit: 50,
        })
    }

    #[test]
    fn adds_lists_shows_and_removes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Store::open(dir.path().join("db")).expect("store");
        s.create_user(&NewUser::named("alice")).expect("user");
        let out = run_ok(
            &mut s,
            add("alice", "done", "testjob__health__exact__Complete"),
        );
        assert_eq!(out, "query ~alice/done created\n");
        let list = run_ok(&mut s, QueryCommand::List);
        assert_eq!(
            list,
            "OWNER  NAME  ENTITY   FLAGS      CONDITIONS\n\
             alice  done  testjob  published  testjob__health__exact__Complete\n"
        );
        let shown = run_ok(
            &mut s,
            QueryCommand::Show {
                owner: "alice".into(),
                name: "done".into(),
            },
        );
        assert!(shown.contains("description: nightly\n"), "{shown}");
        assert!(shown.contains("limit: 50\n"), "{shown}");
        assert!(shown.contains("last updated: never\n"), "{shown}");

        // A bad condition is refused before anything is stored, saying which and why.
        let err = run(
            &mut s,
            &mut Vec::new(),
            add("alice", "bad", "submitter__alice,health__is__Complete"),
        )
        .expect_err("bad operator");
        assert_eq!(
            format!("{err:#}"),
            "checking the conditions of query ~alice/bad: condition 2 `health__is__Complete`: \
             operator `is` is not exact, iexact, icontains, gt or lt"
        );
        let err = run(&mut s, &mut Vec::new(), add("alice", "done", "")).expect_err("taken");
        assert!(format!("{err:#}").contains("already exists"), "{err:#}");

        let out = run_ok(
            &mut s,
            QueryCommand::Remove {
                owner: "alice".into(),
                name: "done".into(),
            },
        );
        assert_eq!(out, "query ~alice/done removed\n");
        let err = run(
            &mut s,
            &mut Vec::new(),
            QueryCommand::Show {
                owner: "alice".into(),
                name: "done".into(),
            },
        )
        .expect_err("gone");
        assert_eq!(format!("{err:#}"), "query ~alice/done does not exist");
    }
}
