//! LAVA's query condition strings (`entity__field__operator__value,…`) typed into
//! [`Condition`]s: the one parser for `results.make_custom_query`, saved queries (whose stored
//! form is this string), `lavabox query add` and the notify block's `dependency_query` and
//! compare queries.
//!
//! Pure: no SQL, no I/O. It lives beside [`super::query`] because the string is the stored
//! form of a saved query and the typed conditions are what `Store::custom_query` runs.
//! Errors say which condition failed and why; [`Problem`] keeps the cause apart so the
//! XML-RPC layer can answer LAVA's exact fault for each.

use time::OffsetDateTime;
use time::macros::format_description;

use super::query::{Condition, Entity, Field, Operand, Operator};

impl Entity {
    /// LAVA's content-type name (`testjob`, `testsuite`, `testcase`).
    pub fn as_str(self) -> &'static str {
        match self {
            Entity::TestJob => "testjob",
            Entity::TestSuite => "testsuite",
            Entity::TestCase => "testcase",
        }
    }

    /// The entity LAVA calls `name`, if it is one a query may return.
    pub fn from_name(name: &str) -> Option<Entity> {
        match name {
            "testjob" => Some(Entity::TestJob),
            "testsuite" => Some(Entity::TestSuite),
            "testcase" => Some(Entity::TestCase),
            _ => None,
        }
    }
}

impl std::fmt::Display for Entity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why one condition cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// Not 2, 3 or 4 `__`-separated parts.
    #[error("expected FIELD__VALUE, FIELD__OPERATOR__VALUE or TABLE__FIELD__OPERATOR__VALUE")]
    Structure,
    /// The table part names no queryable content type.
    #[error("table `{0}` is not testjob, testsuite, testcase or namedtestattribute")]
    Table(String),
    /// The table has no such field (among those LAVA's query editor offers).
    #[error("{table} has no field `{field}` a query may test")]
    Field {
        /// The table.
        table: &'static str,
        /// The field asked for.
        field: String,
    },
    /// An operator Django cannot run.
    #[error("operator `{0}` is not exact, iexact, icontains, gt or lt")]
    Operator(String),
    /// A time field's value is not a date and time.
    #[error("`{0}` is not a date and time (YYYY-MM-DD[ HH:MM[:SS[.ffffff]]])")]
    Time(String),
    /// A measurement's value is not a number.
    #[error("`{0}` is not a decimal number")]
    Number(String),
}

/// Why a query (entity and condition string) cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConditionError {
    /// The entity is not one a query may return.
    #[error("entity `{0}` is not testjob, testsuite or testcase")]
    Entity(String),
    /// One condition is wrong.
    #[error("condition {position} `{text}`: {problem}")]
    Condition {
        /// 1-based position in the string.
        position: usize,
        /// The condition as written.
        text: String,
        /// What is wrong with it.
        problem: Problem,
    },
}

/// A validated query: its entity, its condition string as LAVA writes it (the stored form)
/// and the typed conditions. Only [`QuerySpec::parse`] makes one, so the text and the
/// conditions always agree.
#[derive(Debug, Clone, PartialEq)]
pub struct QuerySpec {
    entity: Entity,
    text: String,
    conditions: Vec<Condition>,
}

impl QuerySpec {
    /// Parses `conditions` for `entity` as LAVA does: conditions split on `,`, each on `__`
    /// into `field__value`, `field__operator__value` (both on `entity`) or
    /// `table__field__operator__value`. Structure errors of every condition come before any
    /// field error, in LAVA's order.
    pub fn parse(entity: &str, conditions: &str) -> Result<QuerySpec, ConditionError> {
        let entity =
            Entity::from_name(entity).ok_or_else(|| ConditionError::Entity(entity.to_owned()))?;
        let conditions_text = conditions;
        let fail = |position: usize, text: &str, problem: Problem| ConditionError::Condition {
            position: position + 1,
            text: text.to_owned(),
            problem,
        };
        let mut raw = Vec::new();
        if !conditions.is_empty() {
            for (i, cond) in conditions.split(',').enumerate() {
                let parts: Vec<&str> = cond.split("__").collect();
                let (table, rest) = match parts.as_slice() {
                    [f, v] => (Table::Entity(entity), [*f, "exact", *v]),
                    [f, o, v] => (Table::Entity(entity), [*f, *o, *v]),
                    [t, f, o, v] => {
                        let table = match *t {
                            "namedtestattribute" => Table::NamedTestAttribute,
                            t => Table::Entity(
                                Entity::from_name(t)
                                    .ok_or_else(|| fail(i, cond, Problem::Table(t.to_owned())))?,
                            ),
                        };
                        (table, [*f, *o, *v])
                    }
                    _ => return Err(fail(i, cond, Problem::Structure)),
                };
                raw.push((i, cond, table, rest));
            }
        }
        let conditions = raw
            .into_iter()
            .map(|(i, cond, table, [f, o, v])| {
                let (field, value) = field(table, f, v)
                    .map_err(|p| fail(i, cond, p))?
                    .ok_or_else(|| {
                        fail(
                            i,
                            cond,
                            Problem::Field {
                                table: table.name(),
                                field: f.to_owned(),
                            },
                        )
                    })?;
                Ok(Condition {
                    field,
                    operator: operator(o).map_err(|p| fail(i, cond, p))?,
                    value,
                })
            })
            .collect::<Result<_, ConditionError>>()?;
        Ok(QuerySpec {
            entity,
            text: conditions_text.to_owned(),
            conditions,
        })
    }

    /// The rows the query returns.
    pub fn entity(&self) -> Entity {
        self.entity
    }

    /// The condition string, as given.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The typed conditions.
    pub fn conditions(&self) -> &[Condition] {
        &self.conditions
    }
}

/// The table a condition names (LAVA's condition content types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Table {
    Entity(Entity),
    NamedTestAttribute,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Entity(e) => e.as_str(),
            Table::NamedTestAttribute => "namedtestattribute",
        }
    }
}

/// LAVA's choice labels → stored codes; an unknown label matches nothing (LAVA uses -1).
fn choice(labels: &[(&str, i64)], value: &str) -> Operand {
    Operand::Int(
        labels
            .iter()
            .find(|(l, _)| *l == value)
            .map_or(-1, |(_, c)| *c),
    )
}

/// A datetime value as Django's DateTimeField accepts it (`YYYY-MM-DD[ HH:MM[:SS[.ffffff]]]`,
/// or `T` for the space), taken as UTC.
fn parse_time(value: &str) -> Result<OffsetDateTime, Problem> {
    use time::PrimitiveDateTime;
    let v = value.replacen('T', " ", 1);
    let formats = [
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond]"),
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
        format_description!("[year]-[month]-[day] [hour]:[minute]"),
    ];
    for f in formats {
        if let Ok(t) = PrimitiveDateTime::parse(&v, f) {
            return Ok(t.assume_utc());
        }
    }
    if let Ok(d) = time::Date::parse(&v, format_description!("[year]-[month]-[day]")) {
        return Ok(d.midnight().assume_utc());
    }
    Err(Problem::Time(value.to_owned()))
}

/// Types one field of `table` with its value; `None` when the table has no such field.
fn field(table: Table, name: &str, value: &str) -> Result<Option<(Field, Operand)>, Problem> {
    let text = || Operand::Text(value.to_owned());
    let entity = match table {
        Table::NamedTestAttribute => return Ok(Some((Field::Attribute(name.to_owned()), text()))),
        Table::Entity(e) => e,
    };
    Ok(Some(match (entity, name) {
        (Entity::TestJob, "submitter") => (Field::Submitter, text()),
        (Entity::TestJob, "start_time") => (Field::StartTime, Operand::Time(parse_time(value)?)),
        (Entity::TestJob, "end_time") => (Field::EndTime, Operand::Time(parse_time(value)?)),
        (Entity::TestJob, "state") => (
            Field::State,
            choice(
                &[
                    ("Submitted", 0),
                    ("Scheduling", 1),
                    ("Scheduled", 2),
                    ("Running", 3),
                    ("Canceling", 4),
                    ("Finished", 5),
                ],
                value,
            ),
        ),
        (Entity::TestJob, "health") => (
            Field::Health,
            choice(
                &[
                    ("Unknown", 0),
                    ("Complete", 1),
                    ("Incomplete", 2),
                    ("Canceled", 3),
                ],
                value,
            ),
        ),
        (Entity::TestJob, "actual_device") => (Field::ActualDevice, text()),
        (Entity::TestJob, "requested_device_type") => (Field::RequestedDeviceType, text()),
        // LAVA: "False" is false, anything else true.
        (Entity::TestJob, "health_check") => (
            Field::HealthCheck,
            Operand::Int(i64::from(value != "False")),
        ),
        (Entity::TestJob, "priority") => (
            Field::Priority,
            choice(&[("Low", 0), ("Medium", 50), ("High", 100)], value),
        ),
        (Entity::TestJob, "description") => (Field::Description, text()),
        (Entity::TestSuite, "name") => (Field::SuiteName, text()),
        (Entity::TestCase, "name") => (Field::CaseName, text()),
        (Entity::TestCase, "result") => (
            Field::CaseResult,
            choice(
                &[
                    ("Test passed", 0),
                    ("Test failed", 1),
                    ("Test skipped", 2),
                    ("Unknown outcome", 3),
                ],
                value,
            ),
        ),
        (Entity::TestCase, "measurement") => (
            Field::Measurement,
            Operand::Real(
                value
                    .trim()
                    .parse::<f64>()
                    .map_err(|_| Problem::Number(value.to_owned()))?,
            ),
        ),
        _ => return Ok(None),
    }))
}

fn operator(name: &str) -> Result<Operator, Problem> {
    match name {
        "exact" => Ok(Operator::Exact),
        "iexact" => Ok(Operator::IExact),
        "icontains" => Ok(Operator::IContains),
        "gt" => Ok(Operator::Gt),
        "lt" => Ok(Operator::Lt),
        // LAVA offers `ne` in its editor but Django has no such lookup, so it fails too.
        other => Err(Problem::Operator(other.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(entity: &str, conditions: &str) -> (Entity, Vec<Condition>) {
        let spec = QuerySpec::parse(entity, conditions).expect(conditions);
        assert_eq!(spec.text(), conditions);
        (spec.entity(), spec.conditions().to_vec())
    }

    fn problem(entity: &str, conditions: &str) -> (usize, Problem) {
        match QuerySpec::parse(entity, conditions).expect_err(conditions) {
            ConditionError::Condition {
                position, problem, ..
            } => (position, problem),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_lava_condition_strings() {
        let (e, c) = ok(
            "testcase",
            "testsuite__name__exact__1_custom-tests,testcase__result__exact__Test failed,\
             testjob__end_time__gt__2017-04-26 00:00:00",
        );
        assert_eq!(e, Entity::TestCase);
        assert_eq!(c.len(), 3);
        assert_eq!(c[0].field, Field::SuiteName);
        assert_eq!(c[0].value, Operand::Text("1_custom-tests".into()));
        assert_eq!(
            (c[1].field.clone(), c[1].value.clone()),
            (Field::CaseResult, Operand::Int(1))
        );
        assert_eq!(c[2].operator, Operator::Gt);
        assert!(matches!(c[2].value, Operand::Time(t) if t.year() == 2017 && t.hour() == 0));
        // Two parts: the entity's field, exact.
        let (_, c) = ok("testjob", "submitter__kernel-ci");
        assert_eq!(c[0].field, Field::Submitter);
        assert_eq!(c[0].operator, Operator::Exact);
        // Three parts: the entity's field with an operator; unknown choices match nothing.
        let (_, c) = ok("testjob", "health__iexact__Bogus");
        assert_eq!(
            (c[0].operator, c[0].value.clone()),
            (Operator::IExact, Operand::Int(-1))
        );
        let (_, c) = ok("testjob", "health_check__False,priority__High");
        assert_eq!(c[0].value, Operand::Int(0));
        assert_eq!(c[1].value, Operand::Int(100));
        let (_, c) = ok("testsuite", "namedtestattribute__build__icontains__4");
        assert_eq!(c[0].field, Field::Attribute("build".into()));
        assert!(ok("testjob", "").1.is_empty());
    }

    #[test]
    fn says_which_condition_is_wrong_and_why() {
        for e in ["device", "TestJob", "", "namedtestattribute"] {
            assert_eq!(
                QuerySpec::parse(e, ""),
                Err(ConditionError::Entity(e.to_owned()))
            );
        }
        assert_eq!(problem("testjob", "a__b__c__d__e"), (1, Problem::Structure));
        assert_eq!(
            problem("testjob", "submitter__x,nope__exact__1"),
            (
                2,
                Problem::Field {
                    table: "testjob",
                    field: "nope".into()
                }
            )
        );
        assert_eq!(
            problem("testcase", "testsuite__result__exact__1").1,
            Problem::Field {
                table: "testsuite",
                field: "result".into()
            }
        );
        assert_eq!(
            problem("testjob", "device__hostname__exact__x"),
            (1, Problem::Table("device".into()))
        );
        assert_eq!(
            problem("testjob", "state__ne__Running").1,
            Problem::Operator("ne".into())
        );
        assert_eq!(
            problem("testjob", "end_time__gt__yesterday").1,
            Problem::Time("yesterday".into())
        );
        assert_eq!(
            problem("testcase", "measurement__gt__fast").1,
            Problem::Number("fast".into())
        );
        // A structure error wins over a field error earlier in the string.
        assert_eq!(problem("testjob", "nope__1,x"), (2, Problem::Structure));
        let err = QuerySpec::parse("testjob", "submitter__x,health__is__Complete").unwrap_err();
        assert_eq!(
            err.to_string(),
            "condition 2 `health__is__Complete`: operator `is` is not exact, iexact, icontains, gt or lt"
        );
    }
}
