//! REST API v0.2 writes over curl against a real `lavabox` listener: permissions on every
//! new write, DRF's 405, validation endpoints, device health, device-type files, workers,
//! tags, aliases, permissions, the token endpoint and job records — each checked by its
//! status, its body and its effect read back through the API or the data directory.

use serde_json::{Value, json};

use crate::rest::{Lab, build_app, curl, curl_args, parse, serve, start};

/// The new write endpoints: anonymous callers get DRF's 401, ordinary users 403.
const WRITES: &[(&str, &str)] = &[
    ("PATCH", "/api/v0.2/jobs/1/"),
    ("PUT", "/api/v0.2/jobs/1/"),
    ("DELETE", "/api/v0.2/jobs/1/"),
    ("POST", "/api/v0.2/devices/qemu01/set_health/"),
    ("POST", "/api/v0.2/devicetypes/qemu/template/"),
    ("POST", "/api/v0.2/devicetypes/qemu/health_check/"),
    ("POST", "/api/v0.2/workers/"),
    ("PATCH", "/api/v0.2/workers/lavabox/"),
    ("DELETE", "/api/v0.2/workers/lavabox/"),
    ("POST", "/api/v0.2/workers/lavabox/config/"),
    ("POST", "/api/v0.2/workers/lavabox/env/"),
    ("PATCH", "/api/v0.2/tags/1/"),
    ("DELETE", "/api/v0.2/tags/1/"),
    ("PATCH", "/api/v0.2/aliases/kvm/"),
    ("GET", "/api/v0.2/permissions/devices/"),
    ("POST", "/api/v0.2/permissions/devices/"),
    ("GET", "/api/v0.2/permissions/devicetypes/"),
    ("POST", "/api/v0.2/permissions/devicetypes/"),
];

async fn admin(lab: &Lab, method: &str, path: &str, body: Option<Value>) -> (u16, String) {
    let body = body.map(|b| b.to_string());
    curl(lab, method, path, Some(&lab.admin), body.as_deref()).await
}

#[tokio::test]
async fn writes_need_the_superuser_and_wrong_methods_answer_like_drf() {
    let lab = start().await;
    for (method, path) in WRITES {
        let (status, body) = curl(&lab, method, path, None, Some("{}")).await;
        assert_eq!(status, 401, "{method} {path}: {body}");
        assert_eq!(
            parse(&body)["detail"],
            "Authentication credentials were not provided."
        );
        let (status, body) = curl(&lab, method, path, Some(&lab.bob), Some("{}")).await;
        assert_eq!(status, 403, "{method} {path}: {body}");
        assert!(parse(&body)["detail"].is_string(), "{body}");
    }
    for (method, path) in [
        ("PUT", "/api/v0.2/jobs/"),
        ("DELETE", "/api/v0.2/system/version/"),
        ("GET", "/api/v0.2/jobs/validate/"),
        ("GET", "/api/v0.2/token/"),
    ] {
        let (status, body) = curl(&lab, method, path, None, None).await;
        assert_eq!(status, 405, "{method} {path}: {body}");
        assert_eq!(
            parse(&body),
            json!({ "detail": format!("Method \"{method}\" not allowed.") })
        );
    }
}

#[tokio::test]
async fn validation_endpoints() {
    let lab = start().await;
    let fixture = |dir: &str, name: &str| {
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/jobs")
                .join(dir)
                .join(name),
        )
        .expect("fixture")
    };
    let extra_key = fixture("strict-invalid", "boot-qemu-extra-key.yaml");
    let validate = async |body: Value| {
        let (status, text) = curl(
            &lab,
            "POST",
            "/api/v0.2/jobs/validate/",
            None,
            Some(&body.to_string()),
        )
        .await;
        assert_eq!(status, 200, "{text}");
        parse(&text)["message"].as_str().unwrap_or("").to_owned()
    };
    assert_eq!(
        validate(json!({ "definition": extra_key })).await,
        "Job valid."
    );
    assert_eq!(
        validate(json!({ "definition": extra_key, "strict": false })).await,
        "Job valid."
    );
    let strict = validate(json!({ "definition": extra_key, "strict": true })).await;
    assert!(strict.starts_with("Job invalid: "), "{strict}");
    // A form value is Python-truthy whatever it says, as in LAVA.
    let (status, text) = curl_args(
        &lab,
        "/api/v0.2/jobs/validate/",
        None,
        &[
            "--data-urlencode",
            &format!("definition={extra_key}"),
            "-d",
            "strict=yes",
        ],
    )
    .await;
    assert_eq!(
        (status, parse(&text)["message"].clone()),
        (200, strict.clone().into())
    );

    let testdef = async |definition: &str| {
        let body = json!({ "definition": definition }).to_string();
        let path = "/api/v0.2/jobs/validate_testdef/";
        let (status, text) = curl(&lab, "POST", path, None, Some(&body)).await;
        (status, parse(&text))
    };
    let good = "metadata:\n  format: Lava-Test Test Definition 1.0\n  name: smoke\n\
                run:\n  steps: [echo hi]\n";
    assert_eq!(
        testdef(good).await,
        (200, json!({ "message": "Test definition valid." }))
    );
    let (status, bad) = testdef("metadata:\n  name: smoke\n").await;
    assert_eq!(status, 200);
    let message = bad["message"].as_str().unwrap_or("");
    assert!(
        message.starts_with("Test defnition invalid: ") && message.contains("format"),
        "{bad}"
    );
    assert_eq!(
        testdef("").await,
        (400, json!({ "definition": "Test definition is required." }))
    );

    let dictionary = async |text: &str| {
        let (status, body) = curl_args(
            &lab,
            "/api/v0.2/devices/validate/",
            None,
            &["-H", "Content-Type: text/plain", "--data-binary", text],
        )
        .await;
        (status, parse(&body))
    };
    assert_eq!(
        dictionary("{% extends 'qemu.jinja2' %}\n").await,
        (200, json!({ "message": "Device dictionary valid." }))
    );
    let (status, bad) = dictionary("{% extends 'nope.jinja2' %}\n").await;
    assert_eq!(status, 200);
    assert!(
        bad["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("Device dictionary invalid: "),
        "{bad}"
    );
    assert_eq!(
        dictionary(" ").await,
        (400, json!({ "device": "Device dictionary is required." }))
    );
}

#[tokio::test]
async fn set_health_and_device_type_files_take_effect() {
    let lab = start().await;
    let device = "/api/v0.2/devices/qemu01/";
    let (status, body) = curl_args(
        &lab,
        "/api/v0.2/devices/qemu01/set_health/",
        Some(&lab.admin),
        &["-d", "health=maintenance", "-d", "reason=cabling"],
    )
    .await;
    assert_eq!((status, parse(&body)), (202, json!({ "message": "OK" })));
    assert_eq!(lab.json(device, None).await.1["health"], "Maintenance");
    let path = "/api/v0.2/devices/qemu01/set_health/";
    let (status, body) = admin(&lab, "POST", path, Some(json!({ "health": "sleepy" }))).await;
    assert_eq!(
        (status, parse(&body)),
        (400, json!({ "message": "Wrong device health SLEEPY" }))
    );
    let path = "/api/v0.2/devices/nope/set_health/";
    assert_eq!(
        admin(&lab, "POST", path, Some(json!({ "health": "Good" })))
            .await
            .0,
        404
    );

    // A new template is used by the next render, and lives in the data directory.
    let dict = json!({ "dictionary": "{% extends 'qemu.jinja2' %}\n{% set arch = 'amd64' %}\n" });
    let (status, _) = admin(
        &lab,
        "POST",
        "/api/v0.2/devices/qemu01/dictionary/",
        Some(dict),
    )
    .await;
    assert_eq!(status, 200);
    let render = "/api/v0.2/devices/qemu01/dictionary/?render=1";
    let (status, before) = lab.text(render, Some(&lab.admin)).await;
    assert_eq!(status, 200, "{before}");
    assert!(before.contains("qemu-system-x86_64"), "{before}");
    let (_, shipped) = lab.text("/api/v0.2/devicetypes/qemu/template/", None).await;
    let edited = shipped.replace("qemu-system-", "qemu-system-edited-");
    let path = "/api/v0.2/devicetypes/qemu/template/";
    let (status, body) = admin(&lab, "POST", path, Some(json!({ "template": edited }))).await;
    assert_eq!((status, body.as_str()), (204, ""));
    let (_, after) = lab.text(render, Some(&lab.admin)).await;
    assert!(after.contains("qemu-system-edited-x86_64"), "{after}");
    let data = lab.dir().join("data/device-types");
    assert_eq!(
        std::fs::read_to_string(data.join("qemu.jinja2")).expect("written template"),
        edited
    );
    let (status, body) = admin(&lab, "POST", path, Some(json!({}))).await;
    assert_eq!(
        (status, parse(&body)),
        (
            400,
            json!({ "template": "Device type template is required." })
        )
    );
    let path = "/api/v0.2/devicetypes/nope/template/";
    assert_eq!(
        admin(&lab, "POST", path, Some(json!({ "template": "x" })))
            .await
            .0,
        404
    );

    let check = "job_name: qemu health check\n";
    let path = "/api/v0.2/devicetypes/qemu/health_check/";
    let (status, _) = admin(&lab, "POST", path, Some(json!({ "config": check }))).await;
    assert_eq!(status, 204);
    assert_eq!(lab.text(path, None).await, (200, check.to_owned()));
    assert_eq!(
        std::fs::read_to_string(data.join("health-checks/qemu.yaml")).expect("written check"),
        check
    );

    // Both survive a restart: a new appliance over the same data directory serves them.
    let addr = serve(build_app(&lab.dir().join("data")).await).await;
    for (path, want) in [
        ("/api/v0.2/devicetypes/qemu/template/", edited.as_str()),
        ("/api/v0.2/devicetypes/qemu/health_check/", check),
    ] {
        let resp = reqwest::get(format!("http://{addr}{path}"))
            .await
            .expect("GET");
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(resp.text().await.expect("body"), want, "{path}");
    }
}

#[tokio::test]
async fn workers_crud_and_files() {
    let lab = start().await;
    let (status, body) = admin(
        &lab,
        "POST",
        "/api/v0.2/workers/",
        Some(json!({ "hostname": "rack2", "description": "second rack" })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let worker = parse(&body);
    assert_eq!(
        (&worker["hostname"], &worker["state"], &worker["health"]),
        (&json!("rack2"), &json!("Offline"), &json!("Active"))
    );
    let again = Some(json!({ "hostname": "rack2" }));
    let (status, body) = admin(&lab, "POST", "/api/v0.2/workers/", again).await;
    assert_eq!(status, 400);
    assert!(parse(&body)["hostname"][0].is_string(), "{body}");
    let (_, list) = lab.json("/api/v0.2/workers/", None).await;
    assert_eq!(list["count"], 2, "{list}");
    let patch = json!({ "health": "Maintenance", "job_limit": 2 });
    let (status, body) = admin(&lab, "PATCH", "/api/v0.2/workers/rack2/", Some(patch)).await;
    assert_eq!(status, 200, "{body}");
    let (_, shown) = lab.json("/api/v0.2/workers/rack2/", None).await;
    assert_eq!(
        (&shown["health"], &shown["job_limit"]),
        (&json!("Maintenance"), &json!(2))
    );
    let (_, kept) = lab
        .json("/api/v0.2/workers/?health=Maintenance", None)
        .await;
    assert_eq!(kept["count"], 1, "{kept}");
    assert_eq!(kept["results"][0]["hostname"], "rack2", "{kept}");
    let bad = Some(json!({ "health": "MAINTENANCE" }));
    let (status, body) = admin(&lab, "PATCH", "/api/v0.2/workers/rack2/", bad).await;
    assert_eq!(status, 400, "{body}");

    let env = "/api/v0.2/workers/rack2/env/";
    let (status, body) = lab.json(env, None).await;
    assert_eq!(status, 400, "no env.yaml yet: {body}");
    let (status, body) = curl_args(
        &lab,
        env,
        Some(&lab.admin),
        &["--data-urlencode", "env=overrides: {}"],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(parse(&body)["message"], "content successfully updated");
    assert_eq!(lab.text(env, None).await, (200, "overrides: {}".to_owned()));
    let config = "/api/v0.2/workers/rack2/config/";
    let yaml = json!({ "config": "dispatcher_ip: 10.0.0.1\n" });
    assert_eq!(admin(&lab, "POST", config, Some(yaml)).await.0, 200);
    assert_eq!(
        lab.text(config, None).await,
        (200, "dispatcher_ip: 10.0.0.1\n".to_owned())
    );

    let (status, _) = admin(&lab, "DELETE", "/api/v0.2/workers/rack2/", None).await;
    assert_eq!(status, 204);
    assert_eq!(lab.json("/api/v0.2/workers/rack2/", None).await.0, 404);
    let (own, _) = admin(&lab, "DELETE", "/api/v0.2/workers/lavabox/", None).await;
    assert_eq!(own, 400, "the appliance's own worker stays");
}

#[tokio::test]
async fn tags_aliases_permissions_and_token() {
    let lab = start().await;
    let tag = json!({ "name": "usb", "description": "has USB" });
    let (_, body) = admin(&lab, "POST", "/api/v0.2/tags/", Some(tag)).await;
    let id = parse(&body)["id"].as_i64().expect("tag id");
    let path = format!("/api/v0.2/tags/{id}/");
    let (status, body) = admin(&lab, "PATCH", &path, Some(json!({ "name": "usb3" }))).await;
    assert_eq!(
        (status, parse(&body)),
        (
            200,
            json!({ "id": id, "name": "usb3", "description": "has USB" })
        )
    );
    assert_eq!(lab.json(&path, None).await.1["name"], "usb3");
    assert_eq!(admin(&lab, "DELETE", &path, None).await.0, 204);
    assert_eq!(lab.json(&path, None).await.0, 404);
    assert_eq!(admin(&lab, "DELETE", &path, None).await.0, 404);

    let alias = json!({ "name": "kvm", "device_type": "qemu" });
    assert_eq!(
        admin(&lab, "POST", "/api/v0.2/aliases/", Some(alias))
            .await
            .0,
        201
    );
    let rename = Some(json!({ "name": "virt" }));
    let (status, body) = admin(&lab, "PUT", "/api/v0.2/aliases/kvm/", rename).await;
    assert_eq!(
        (status, parse(&body)),
        (200, json!({ "name": "virt", "device_type": "qemu" }))
    );
    assert_eq!(lab.json("/api/v0.2/aliases/kvm/", None).await.0, 404);
    let bad = Some(json!({ "device_type": "nope" }));
    let (status, body) = admin(&lab, "PATCH", "/api/v0.2/aliases/virt/", bad).await;
    assert_eq!(status, 400, "{body}");

    // A device permission restricts the device to the group; deleting it opens it again.
    let perms = "/api/v0.2/permissions/devices/";
    let grant = |group: &str, permission: &str| {
        Some(json!({ "group": group, "permission": permission, "device": "qemu01" }))
    };
    let (status, body) = admin(&lab, "POST", perms, grant("nope", "view_device")).await;
    assert_eq!(status, 400, "{body}");
    assert!(parse(&body)["group"][0].is_string(), "{body}");
    create_group(&lab, "lab").await;
    let (status, body) = admin(&lab, "POST", perms, grant("lab", "change_device")).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        parse(&body)["permission"][0]
            .as_str()
            .unwrap_or("")
            .contains("only superusers change devices"),
        "{body}"
    );
    let (status, body) = admin(&lab, "POST", perms, grant("lab", "view_device")).await;
    assert_eq!(status, 201, "{body}");
    let row = parse(&body);
    assert_eq!(
        (&row["group"], &row["device"]),
        (&json!("lab"), &json!("qemu01"))
    );
    assert_eq!(lab.json("/api/v0.2/devices/qemu01/", None).await.0, 404);
    let (_, list) = lab.json(perms, Some(&lab.admin)).await;
    assert_eq!(list["count"], 2, "view and submit: {list}");
    let (status, _) = admin(&lab, "POST", perms, grant("lab", "submit_to_device")).await;
    assert_eq!(status, 400, "already restricted to this group");
    let row_path = format!("{perms}{}/", row["id"]);
    assert_eq!(admin(&lab, "DELETE", &row_path, None).await.0, 204);
    assert_eq!(lab.json("/api/v0.2/devices/qemu01/", None).await.0, 200);
    assert_eq!(lab.json(perms, Some(&lab.admin)).await.1["count"], 0);
    let dt = json!({ "group": "lab", "permission": "view_devicetype", "devicetype": "qemu" });
    let (status, body) = admin(&lab, "POST", "/api/v0.2/permissions/devicetypes/", Some(dt)).await;
    assert_eq!(status, 400);
    assert!(
        parse(&body)["detail"]
            .as_str()
            .unwrap_or("")
            .contains("no per-group device-type"),
        "{body}"
    );

    let (status, body) = curl(&lab, "POST", "/api/v0.2/token/", None, Some("{}")).await;
    assert_eq!(
        (status, parse(&body)),
        (
            400,
            json!({
                "username": ["This field is required."],
                "password": ["This field is required."]
            })
        )
    );
    let login = json!({ "username": "admin", "password": "anything" }).to_string();
    let (status, body) = curl(&lab, "POST", "/api/v0.2/token/", None, Some(&login)).await;
    assert_eq!(
        (status, parse(&body)),
        (
            400,
            json!({ "non_field_errors": ["Unable to log in with provided credentials."] })
        )
    );
}

/// Creates a group with `lavabox --data DIR group add` (there is no REST group endpoint).
async fn create_group(lab: &Lab, name: &str) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_lavabox"))
        .arg("--data")
        .arg(lab.dir().join("data"))
        .args(["group", "add", name])
        .output()
        .await
        .expect("lavabox group add");
    assert!(out.status.success(), "{out:?}");
}

#[tokio::test]
async fn job_records_are_edited_and_deleted_by_the_superuser() {
    let lab = start().await;
    let queued = lab.public[0].0;
    let path = format!("/api/v0.2/jobs/{queued}/");
    let patch = json!({ "description": "renamed", "priority": 90 });
    let (status, body) = admin(&lab, "PATCH", &path, Some(patch)).await;
    assert_eq!(status, 200, "{body}");
    let job = parse(&body);
    assert_eq!(
        (&job["description"], &job["priority"]),
        (&json!("renamed"), &json!(90))
    );
    assert_eq!(lab.json(&path, None).await.1["description"], "renamed");
    let (status, body) = admin(&lab, "PATCH", &path, Some(json!({ "state": "Finished" }))).await;
    assert_eq!(status, 400);
    assert!(parse(&body)["state"][0].is_string(), "{body}");
    let (status, _) = admin(&lab, "PATCH", &path, Some(json!({ "priority": 101 }))).await;
    assert_eq!(status, 400);
    // A PUT of the object as read, with one editable field changed, is accepted.
    let (_, mut whole) = lab.json(&path, Some(&lab.admin)).await;
    whole["description"] = json!("put back");
    let (status, body) = admin(&lab, "PUT", &path, Some(whole)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(parse(&body)["description"], "put back");

    let finished = lab.public[1].0;
    let path = format!("/api/v0.2/jobs/{finished}/");
    assert_eq!(
        admin(&lab, "DELETE", &path, None).await,
        (204, String::new())
    );
    assert_eq!(lab.json(&path, Some(&lab.admin)).await.0, 404);
    assert_eq!(admin(&lab, "DELETE", &path, None).await.0, 404);
    let (_, jobs) = lab.json("/api/v0.2/jobs/", None).await;
    assert_eq!(jobs["count"], 6, "{jobs}");
}

/// `set_health` announces the change on the event bus like every health change, and a worker
/// health change over REST is LAVA's `.worker` event.
#[tokio::test]
async fn health_changes_over_rest_are_published() {
    use lavabox::events::Event;
    use lavabox::model::DeviceHealth;
    use lavabox::store::{NewDevice, NewDeviceType, NewUser};

    let dir = tempfile::tempdir().expect("tempdir");
    let app = build_app(&dir.path().join("data")).await;
    let token = app
        .store()
        .call(|s| {
            let mut root = NewUser::named("admin");
            root.is_superuser = true;
            s.create_user(&root)?;
            s.create_device_type(&NewDeviceType::named("qemu"))?;
            s.create_device(&NewDevice::new("qemu01", "qemu"))?;
            Ok(s.create_token("admin", "test")?.secret)
        })
        .await
        .expect("seed");
    let mut events = app.events().subscribe();
    let addr = serve(app).await;
    let client = reqwest::Client::new();
    let post = async |path: &str, body: Value| {
        client
            .request(
                if path.contains("workers") {
                    reqwest::Method::PATCH
                } else {
                    reqwest::Method::POST
                },
                format!("http://{addr}{path}"),
            )
            .header("Authorization", format!("Token {token}"))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("request")
            .status()
            .as_u16()
    };
    let path = "/api/v0.2/devices/qemu01/set_health/";
    assert_eq!(post(path, json!({ "health": "Good" })).await, 202);
    let next = async |events: &mut tokio::sync::broadcast::Receiver<_>| {
        tokio::time::timeout(std::time::Duration::from_secs(10), events.recv())
            .await
            .expect("an event within 10 s")
            .expect("bus open")
    };
    let published: std::sync::Arc<lavabox::events::Published> = next(&mut events).await;
    match &published.event {
        Event::Device(change) => {
            assert_eq!(
                (change.hostname.as_str(), change.health),
                ("qemu01", DeviceHealth::Good)
            );
        }
        other => panic!("expected a device event, got {other:?}"),
    }
    let path = "/api/v0.2/workers/lavabox/";
    assert_eq!(post(path, json!({ "health": "Maintenance" })).await, 200);
    let published = next(&mut events).await;
    match &published.event {
        Event::Worker(change) => assert_eq!(
            (change.hostname.as_str(), change.health.as_str()),
            ("lavabox", "Maintenance")
        ),
        other => panic!("expected a worker event, got {other:?}"),
    }
}
