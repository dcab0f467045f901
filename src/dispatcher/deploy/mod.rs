//! Deploys: downloads (HTTP(S), file://), decompression, checksums and the overlay appended
//! to a ramdisk, shared by the deploy targets, one file each ([`tftp`], [`tmpfs`]). Files are
//! written with tokio I/O; hashing and decompression run on the blocking pool.

pub mod tftp;
pub mod tmpfs;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use futures_util::StreamExt as _;
use sha2::Digest as _;
use tokio::io::AsyncWriteExt as _;

use super::JobError;
use super::job::JobCtx;
use super::lava_suite::ActionResult;
use super::log::JobLog;
use crate::jobdef::action::deploy::Resource;
use crate::model::ErrorType;
use crate::pipeline::step::{Codec, Download};
use crate::testshell::cpio::{NewcOptions, write_newc};
use crate::testshell::overlay::Overlay;

/// An HTTP client for downloads.
pub fn http_client() -> Result<reqwest::Client, JobError> {
    reqwest::Client::builder()
        .build()
        .map_err(|e| JobError::new(ErrorType::Infrastructure, format!("HTTP client: {e}")))
}

fn infra(message: impl Into<String>) -> JobError {
    JobError::new(ErrorType::Infrastructure, message)
}

fn job(message: impl Into<String>) -> JobError {
    JobError::new(ErrorType::Job, message)
}

/// The file name a resource gets: the last URL segment without its compression suffix.
pub fn file_name(resource: &Resource, fallback: &str) -> String {
    let path = resource.url.split(['?', '#']).next().unwrap_or_default();
    let mut name = path
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty() && *n != "." && *n != "..")
        .unwrap_or(fallback)
        .to_owned();
    if let Some(c) = resource.compression {
        let suffix = format!(".{}", c.as_str());
        if let Some(stripped) = name.strip_suffix(&suffix)
            && !stripped.is_empty()
        {
            name = stripped.to_owned();
        }
    }
    name
}

/// A downloaded and checked file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// Where it is, decompressed.
    pub path: PathBuf,
    /// Bytes downloaded (before decompression), as LAVA reports a download's `size`.
    pub size: u64,
    /// The checksums the job gave (`md5sum`, `sha256sum`, `sha512sum`), as computed: lower-case
    /// hex of the downloaded bytes. LAVA computes all three for every download; here only the
    /// ones to verify are, since hashing a kernel and ramdisk on a Raspberry Pi takes longer
    /// than the rest of a job's start.
    pub checksums: Vec<(&'static str, String)>,
}

/// Downloads `resource` into `dir/name`, checks its checksums, decompresses it with `codec`.
pub async fn fetch(
    client: &reqwest::Client,
    log: &JobLog,
    resource: &Resource,
    codec: Option<Codec>,
    dir: &Path,
    name: &str,
) -> Result<Fetched, JobError> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| infra(format!("creating {}: {e}", dir.display())))?;
    let raw = dir.join(format!("{name}.download"));
    let url = resource.url.as_str();
    log.info(format!("downloading {url}"));
    let started = std::time::Instant::now();
    if let Some(path) = url.strip_prefix("file://") {
        if tokio::fs::metadata(path).await.is_err() {
            return Err(job(format!("Unable to find file '{path}'")));
        }
        tokio::fs::copy(path, &raw)
            .await
            .map_err(|e| infra(format!("copying {path}: {e}")))?;
    } else {
        let response = client
            .get(url)
            .send()
            .await
            .map_err(|e| infra(format!("Unable to download '{url}': {e}")))?;
        let status = response.status();
        if !status.is_success() {
            return Err(job(format!(
                "Resource unavailable at '{url}' ({})",
                status.as_u16()
            )));
        }
        let mut file = tokio::fs::File::create(&raw)
            .await
            .map_err(|e| infra(format!("creating {}: {e}", raw.display())))?;
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| infra(format!("Unable to download '{url}': {e}")))?;
            file.write_all(&chunk)
                .await
                .map_err(|e| infra(format!("writing {}: {e}", raw.display())))?;
        }
        file.flush()
            .await
            .map_err(|e| infra(format!("writing {}: {e}", raw.display())))?;
    }
    let dest = dir.join(name);
    let r = resource.clone();
    let (raw2, dest2) = (raw.clone(), dest.clone());
    let fetched =
        tokio::task::spawn_blocking(move || check_and_decompress(&r, codec, &raw2, dest2))
            .await
            .map_err(|e| JobError::new(ErrorType::Bug, format!("decompression task: {e}")))??;
    let _ = tokio::fs::remove_file(&raw).await;
    log.info(format!(
        "{url}: {} bytes in {:.2} seconds",
        fetched.size,
        started.elapsed().as_secs_f64()
    ));
    Ok(fetched)
}

impl JobCtx<'_> {
    /// Downloads `download` into `dir` and records it in the `lava` suite as LAVA does:
    /// `http-download` or `file-download` with the size and the checksums it was verified
    /// against, at its `http-download` level.
    pub(super) async fn download(
        &self,
        client: &reqwest::Client,
        download: &Download,
        dir: &Path,
        namespace: Option<&str>,
    ) -> Result<Fetched, JobError> {
        let started = tokio::time::Instant::now();
        let name = file_name(&download.resource, &download.label);
        let res = &download.resource;
        let fetched = fetch(client, &self.log, res, download.codec, dir, &name).await?;
        let action = if res.url.starts_with("file://") {
            "file-download"
        } else {
            "http-download"
        };
        let mut result =
            ActionResult::new(action, download.level.clone(), namespace, started.elapsed())
                .with("label", download.label.as_str())
                .with("size", fetched.size);
        for (kind, sum) in &fetched.checksums {
            result = result.with(kind, sum.as_str());
        }
        self.record_action(result).await;
        Ok(fetched)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checksums `raw`, verifies the ones the job gave, and writes it, decompressed, to `dest`.
fn check_and_decompress(
    resource: &Resource,
    codec: Option<Codec>,
    raw: &Path,
    dest: PathBuf,
) -> Result<Fetched, JobError> {
    let io = |e: std::io::Error| infra(format!("reading {}: {e}", raw.display()));
    let size = std::fs::metadata(raw).map_err(io)?.len();
    let mut md5 = resource.md5sum.as_ref().map(|_| md5::Md5::new());
    let mut sha256 = resource.sha256sum.as_ref().map(|_| sha2::Sha256::new());
    let mut sha512 = resource.sha512sum.as_ref().map(|_| sha2::Sha512::new());
    if md5.is_some() || sha256.is_some() || sha512.is_some() {
        let mut file = std::fs::File::open(raw).map_err(io)?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = file.read(&mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            md5.iter_mut().for_each(|h| h.update(&buf[..n]));
            sha256.iter_mut().for_each(|h| h.update(&buf[..n]));
            sha512.iter_mut().for_each(|h| h.update(&buf[..n]));
        }
    }
    let computed = [
        ("md5sum", &resource.md5sum, md5.map(|h| hex(&h.finalize()))),
        (
            "sha256sum",
            &resource.sha256sum,
            sha256.map(|h| hex(&h.finalize())),
        ),
        (
            "sha512sum",
            &resource.sha512sum,
            sha512.map(|h| hex(&h.finalize())),
        ),
    ];
    let mut checksums = Vec::new();
    for (kind, expected, actual) in computed {
        let (Some(expected), Some(actual)) = (expected, actual) else {
            continue;
        };
        if !expected.eq_ignore_ascii_case(&actual) {
            return Err(job(format!(
                "{kind} mismatch for '{}': expected {expected}, got {actual}",
                resource.url
            )));
        }
        checksums.push((kind, actual));
    }
    let input = std::fs::File::open(raw).map_err(io)?;
    let input = std::io::BufReader::new(input);
    let out = std::fs::File::create(&dest)
        .map_err(|e| infra(format!("creating {}: {e}", dest.display())))?;
    let mut out = std::io::BufWriter::new(out);
    let mut reader: Box<dyn Read> = match codec {
        None => Box::new(input),
        Some(Codec::Gz) => Box::new(flate2::read::MultiGzDecoder::new(input)),
        Some(Codec::Xz) => Box::new(liblzma::read::XzDecoder::new_multi_decoder(input)),
        Some(Codec::Bz2) => Box::new(bzip2::read::MultiBzDecoder::new(input)),
        Some(Codec::Zstd) => Box::new(
            zstd::stream::read::Decoder::new(input)
                .map_err(|e| job(format!("zstd decompression of '{}': {e}", resource.url)))?,
        ),
    };
    std::io::copy(&mut reader, &mut out).map_err(|e| {
        job(format!(
            "Unable to decompress '{}' ({}): {e}",
            resource.url,
            codec.map_or("none", Codec::as_str)
        ))
    })?;
    out.flush()
        .map_err(|e| infra(format!("writing {}: {e}", dest.display())))?;
    Ok(Fetched {
        path: dest,
        size,
        checksums,
    })
}

/// Appends the overlay to the cpio (newc) ramdisk at `path` (gzip-compressed or not), writing
/// `dest`, gzip-compressed when `gzip`.
pub async fn add_overlay(
    overlay: &Overlay,
    path: PathBuf,
    dest: PathBuf,
    gzip: bool,
) -> Result<(), JobError> {
    let archive = write_newc(&overlay.entries, &NewcOptions::default())
        .map_err(|e| JobError::new(ErrorType::Bug, format!("building the overlay: {e}")))?;
    tokio::task::spawn_blocking(move || {
        let data =
            std::fs::read(&path).map_err(|e| infra(format!("reading {}: {e}", path.display())))?;
        let mut cpio = if data.starts_with(&[0x1f, 0x8b]) {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(&data[..])
                .read_to_end(&mut out)
                .map_err(|e| job(format!("Unable to decompress the ramdisk: {e}")))?;
            out
        } else {
            data
        };
        // The kernel unpacks concatenated newc archives in turn; pad to 4 bytes first.
        while cpio.len() % 4 != 0 {
            cpio.push(0);
        }
        cpio.extend_from_slice(&archive);
        let out = std::fs::File::create(&dest)
            .map_err(|e| infra(format!("creating {}: {e}", dest.display())))?;
        let werr = |e: std::io::Error| infra(format!("writing {}: {e}", dest.display()));
        if gzip {
            let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
            enc.write_all(&cpio).map_err(werr)?;
            enc.finish().map_err(werr)?;
        } else {
            let mut out = out;
            out.write_all(&cpio).map_err(werr)?;
        }
        Ok(())
    })
    .await
    .map_err(|e| JobError::new(ErrorType::Bug, format!("overlay task: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobdef::action::deploy::Compression;

    fn resource(url: &str, compression: Option<Compression>) -> Resource {
        Resource {
            url: url.into(),
            compression,
            archive_tar: false,
            md5sum: None,
            sha256sum: None,
            sha512sum: None,
            headers: None,
            overlays: None,
        }
    }

    #[test]
    fn names_drop_compression_suffix() {
        let r = resource("http://x/a/zImage.gz?x=1", Some(Compression::Gz));
        assert_eq!(file_name(&r, "kernel"), "zImage");
        assert_eq!(file_name(&resource("http://x/", None), "kernel"), "kernel");
    }

    #[tokio::test]
    async fn file_download_checks_and_decompresses() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("data.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"hello").unwrap();
        let gz = enc.finish().unwrap();
        std::fs::write(&src, &gz).unwrap();
        let mut r = resource(&format!("file://{}", src.display()), Some(Compression::Gz));
        r.md5sum = Some(hex(&md5::Md5::digest(&gz)));
        r.sha256sum = Some(hex(&sha2::Sha256::digest(&gz)));
        crate::tls::install_tls_provider();
        let client = http_client().unwrap();
        let out = dir.path().join("out");
        let got = fetch(
            &client,
            &JobLog::discard(),
            &r,
            Some(Codec::Gz),
            &out,
            "data",
        )
        .await
        .unwrap();
        assert_eq!(std::fs::read(&got.path).unwrap(), b"hello");
        assert_eq!(
            got.size,
            gz.len() as u64,
            "the downloaded size, not the decompressed"
        );
        assert_eq!(
            got.checksums,
            [
                ("md5sum", r.md5sum.clone().unwrap()),
                ("sha256sum", r.sha256sum.clone().unwrap())
            ],
            "the checksums the job gave, and only those"
        );
        r.md5sum = Some("00".into());
        let err = fetch(
            &client,
            &JobLog::discard(),
            &r,
            Some(Codec::Gz),
            &out,
            "data",
        )
        .await
        .unwrap_err();
        assert_eq!(err.error_type, ErrorType::Job);
        assert!(err.message.contains("md5sum mismatch"), "{}", err.message);
    }
}
