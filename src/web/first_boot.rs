//! The appliance's first-boot credentials on the login page, until they are changed, and the
//! change-password page (`/accounts/password`).
//!
//! The image's first boot (and the package's postinst) makes the admin with a random password
//! (`packaging/first-admin`) and leaves `<data_dir>/first-boot-credentials` (`user=…`,
//! `password=…`; mode 0600, owned by lavabox) for the login page, as an appliance shows its
//! default login. The notice is shown only while that password still opens that account: once
//! it is changed, here or with `lavabox user passwd`, the file is deleted and never shown
//! again. Whether it still opens the account is one argon2 check per stored password hash
//! (remembered by the hash string), so anonymous page views cost no password hashing.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use axum::extract::{Form, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;

use crate::app::App;

use super::{Page, Visitor, password, render};

/// The notice's file name in the data directory.
pub const FILE: &str = "first-boot-credentials";

/// The credentials the first boot made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The admin's user name.
    pub user: String,
    /// The first-boot password.
    pub password: String,
}

/// Reads the notice's `key=value` lines (pure); `None` unless both keys have a value.
pub fn parse(text: &str) -> Option<Credentials> {
    let mut user = None;
    let mut password = None;
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some(("user", v)) if !v.trim().is_empty() => user = Some(v.trim().to_owned()),
            Some(("password", v)) if !v.is_empty() => password = Some(v.to_owned()),
            _ => {}
        }
    }
    Some(Credentials {
        user: user?,
        password: password?,
    })
}

/// The notice's path for `data_dir`.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

/// The last hash checked against the notice's password and whether it matched.
static CHECKED: Mutex<Option<(String, bool)>> = Mutex::new(None);

/// The first-boot credentials to show, if the file exists and its password still opens its
/// account; a stale file (the password was changed) is deleted.
pub async fn notice(app: &App) -> Option<Credentials> {
    let file = path(&app.config().data_dir);
    let text = tokio::fs::read_to_string(&file).await.ok()?;
    let creds = parse(&text)?;
    let user = creds.user.clone();
    let phc = match app.store().call(move |s| s.password_of(&user)).await {
        Ok(Some((_, phc))) => phc,
        Ok(None) => return None,
        Err(err) => {
            tracing::warn!(error = %err, "reading the first-boot admin's password");
            return None;
        }
    };
    let known = CHECKED
        .lock()
        .ok()
        .and_then(|c| c.as_ref().filter(|(h, _)| *h == phc).map(|(_, ok)| *ok));
    let valid = match known {
        Some(ok) => ok,
        None => {
            let ok = password::verify_blocking(creds.password.clone(), Some(phc.clone())).await;
            if let Ok(mut c) = CHECKED.lock() {
                *c = Some((phc, ok));
            }
            ok
        }
    };
    if valid {
        Some(creds)
    } else {
        forget(&file).await;
        None
    }
}

/// Deletes the notice (the password was changed).
async fn forget(file: &Path) {
    match tokio::fs::remove_file(file).await {
        Ok(()) => {
            tracing::info!(file = %file.display(), "first-boot password changed: notice removed")
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => {
            tracing::warn!(file = %file.display(), error = %err, "removing the first-boot notice")
        }
    }
}

/// The change-password form.
#[derive(Debug, Deserialize)]
pub struct PasswordForm {
    current: String,
    new: String,
    confirm: String,
}

/// `GET /accounts/password`: the change-password page (logged-in users).
pub async fn password_page(State(app): State<App>, visitor: Visitor) -> Result<Response, Page> {
    let Some(user) = visitor.caller.username().map(str::to_owned) else {
        return Err(Page::Login("/accounts/password".into()));
    };
    let first_boot = notice(&app).await.is_some_and(|c| c.user == user);
    render(
        "password.html",
        &visitor,
        json!({ "first_boot": first_boot, "min_len": password::MIN_LEN }),
    )
}

/// Why a new password is refused (pure).
pub fn refuse(new: &str, confirm: &str, current: &str) -> Option<String> {
    if new != confirm {
        return Some("The two new passwords differ.".into());
    }
    if new.chars().count() < password::MIN_LEN {
        return Some(format!(
            "The new password must have at least {} characters.",
            password::MIN_LEN
        ));
    }
    if new == current {
        return Some("The new password is the current one.".into());
    }
    None
}

/// `POST /accounts/password`: checks the current password, stores the new one (every session
/// of the user ends, as with `lavabox user passwd`), removes the first-boot notice, and sends
/// the user to sign in again.
pub async fn change_password(
    State(app): State<App>,
    visitor: Visitor,
    Form(form): Form<PasswordForm>,
) -> Result<Response, Page> {
    let Some(user) = visitor.caller.username().map(str::to_owned) else {
        return Err(Page::Login("/accounts/password".into()));
    };
    let lookup = user.clone();
    let phc = app
        .store()
        .call(move |s| s.password_of(&lookup))
        .await?
        .map(|(_, phc)| phc);
    let refused = if !password::verify_blocking(form.current.clone(), phc).await {
        Some("The current password is not correct.".to_owned())
    } else {
        refuse(&form.new, &form.confirm, &form.current)
    };
    if let Some(error) = refused {
        let mut r = render(
            "password.html",
            &visitor,
            json!({ "error": error, "min_len": password::MIN_LEN }),
        )?;
        *r.status_mut() = axum::http::StatusCode::BAD_REQUEST;
        return Ok(r);
    }
    let hashed = password::hash_blocking(form.new)
        .await
        .map_err(|err| Page::Internal(format!("hashing a password: {err}")))?;
    let name = user.clone();
    app.store()
        .call(move |s| s.set_password(&name, &hashed))
        .await?;
    tracing::info!(username = %user, "web password changed");
    let file = path(&app.config().data_dir);
    if let Ok(text) = tokio::fs::read_to_string(&file).await
        && parse(&text).is_some_and(|c| c.user == user)
    {
        forget(&file).await;
    }
    Ok(Redirect::to("/accounts/login?next=/&changed=1").into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_notice() {
        assert_eq!(
            parse("# made at first boot\nuser=admin\npassword=Xy7+9a=b\n"),
            Some(Credentials {
                user: "admin".into(),
                password: "Xy7+9a=b".into()
            })
        );
        assert_eq!(
            parse("user=admin\r\npassword=pw\r\n").unwrap().password,
            "pw"
        );
        assert_eq!(parse("user=admin\n"), None);
        assert_eq!(parse("password=x\n"), None);
        assert_eq!(parse("user=\npassword=x\n"), None);
        assert_eq!(parse(""), None);
    }

    #[test]
    fn refuses_weak_or_mismatched_passwords() {
        assert!(refuse("long enough pw", "long enough pw", "old password").is_none());
        assert!(
            refuse("long enough pw", "long enough px", "old")
                .unwrap()
                .contains("differ")
        );
        assert!(
            refuse("short", "short", "old")
                .unwrap()
                .contains("at least")
        );
        assert!(
            refuse("same password", "same password", "same password")
                .unwrap()
                .contains("current")
        );
    }
}
