//! A generated LAVA job of a chosen size, shared by `benches/validate.rs`,
//! `benches/validate_load.rs` and `tests/it/abuse.rs` (each includes it by `#[path]`).

/// One action group of a realistic job: deploy, boot, and a test with inline and git
/// definitions, commented, with literal blocks for the longer scripts.
fn action_group(job: &mut String, i: usize) {
    job.push_str(&format!(
        "# ---- round {i} ----
- deploy:
    namespace: target
    timeout: {{minutes: 10}}
    to: tmpfs
    images:
      rootfs:
        url: https://files.example.org/builds/{i}/debian-bookworm-arm64.qcow2.xz
        image_arg: '-drive format=qcow2,file={{rootfs}}'
        format: qcow2
        compression: xz
        sha256sum: 5f2b7ac7e0b1c3a8d9e4f6a7b8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f7a8{}
    os: debian
- boot:
    namespace: target
    timeout:
      minutes: 5
    method: qemu
    media: tmpfs
    prompts:
    - 'root@debian:~#'
    - '/ #'
    auto_login: {{login_prompt: 'login:', username: root}}
- test:
    namespace: target
    timeout: {{minutes: 30}}
    definitions:
",
        i % 10
    ));
    for t in 0..4 {
        job.push_str(&format!(
            "    - from: inline
      name: smoke-{i}-{t}
      path: inline/smoke-{t}.yaml
      repository:
        metadata:
          format: Lava-Test Test Definition 1.0
          name: smoke-{t}
          description: \"generated test {t} of round {i}\"
          os: [debian]
          scope: [functional]
        install:
          deps: [curl, jq]
        run:
          steps:
          - lava-test-case uname --shell uname -a
          - lava-test-case kernel-{t} --result pass
          - |
            for f in /proc/cpuinfo /proc/meminfo; do
              lava-test-case \"read-$(basename $f)\" --shell test -s $f
            done
        parse:
          fixupdict: {{PASS: pass, FAIL: fail}}
    - {{from: git, repository: 'https://git.example.org/tests-{i}.git', path: smoke/{t}.yaml, name: git-{i}-{t}, parameters: {{A: '1', B: '2'}}}}
"
        ));
    }
}

/// A valid job of at least `target` bytes.
pub fn big_job(target: usize) -> String {
    let mut job = String::from(
        "# Generated benchmark job.
device_type: qemu
job_name: bench
visibility: public
priority: medium
timeouts:
  job: {hours: 10}
  action: {minutes: 10}
  connection: {minutes: 2}
context:
  arch: arm64
  memory: 2048
metadata:
  build: '1'
  source: https://ci.example.org/job/1
actions:
",
    );
    let mut i = 0;
    while job.len() < target {
        action_group(&mut job, i);
        i += 1;
    }
    job
}
