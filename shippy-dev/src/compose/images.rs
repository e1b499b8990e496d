//! Every image docker-compose.yml and the Dockerfile name (as the registry has
//! it, else a stand-in from docker/standins/), and the project image.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

use super::{Run, output_to, read_text, stdout_of, tail};
use crate::process::spare_ports;

/// The label a stand-in carries: the hash of its inputs.
pub(super) const LABEL: &str = "org.shippy-rs.standin";

/// The images the files name, and the stand-in directory of each (with the
/// stage to build, where its Dockerfile holds several).
const IMAGES: [(&str, &str, Option<&str>); 8] = [
    ("debian:bookworm-slim", "debian", None),
    ("rust:1.95-slim-bookworm", "rust", None),
    ("postgres:15", "postgres", None),
    ("nats:2.10-alpine", "nats", None),
    ("hashicorp/consul:1.18", "consul", None),
    ("jaegertracing/all-in-one:1.57", "python", Some("jaeger")),
    ("axllent/mailpit:v1.20", "python", Some("mailpit")),
    ("mongo:7", "mongo", None),
];

/// Step 3: each image, then a check that the files name no other.
pub(super) fn ensure_images(run: &mut Run) -> anyhow::Result<()> {
    for (image, name, target) in IMAGES {
        ensure_image(run, image, name, target)?;
    }
    let named = named_images(&run.repo)?;
    let missing: Vec<&str> = named
        .iter()
        .filter(|image| !image_exists(run, image))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        bail!("images named but not available: {}", missing.join(" "));
    }
    run.ok(&format!(
        "every image named is available: {}",
        named.join(" ")
    ));
    Ok(())
}

/// A short hash of the words and of the files' names and contents (an
/// argument that names a file counts as the file).
fn key_of(parts: &[String]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        let path = Path::new(part);
        match std::fs::read(path) {
            Ok(contents) if path.is_file() => {
                let base = path.file_name().map(|name| name.to_string_lossy());
                hash.update(base.unwrap_or_default().as_bytes());
                hash.update(b"\n");
                hash.update(&contents);
            }
            _ => {
                hash.update(part.as_bytes());
                hash.update(b"\n");
            }
        }
    }
    hash.finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<String>()[..16]
        .to_owned()
}

/// The files of a stand-in directory, in the shell's (C locale) order.
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .filter(|name| !name.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
        .into_iter()
        .map(|name| dir.join(name).to_string_lossy().into_owned())
        .collect()
}

/// This machine's Debian mirror, read from its apt sources.
fn debian_mirror() -> anyhow::Result<String> {
    let sources =
        std::fs::read_to_string("/etc/apt/sources.list.d/debian.sources").unwrap_or_default();
    let mut uri = "";
    let mut found = None;
    for line in sources.lines() {
        if line.starts_with("URIs:") {
            uri = line.split_whitespace().nth(1).unwrap_or("");
        } else if line.starts_with("Suites:") && !uri.contains("security") {
            found = Some(uri);
            break;
        }
    }
    if let Some(uri) = found.filter(|uri| !uri.is_empty()) {
        return Ok(uri.to_owned());
    }
    let list = std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    list.lines()
        .filter(|line| line.split_whitespace().next() == Some("deb") && !line.contains("security"))
        .flat_map(|line| line.split_whitespace().skip(1))
        .find(|field| {
            field.split_once("://").is_some_and(|(scheme, _)| {
                !scheme.is_empty() && scheme.bytes().all(|b| b.is_ascii_lowercase())
            })
        })
        .map(str::to_owned)
        .context("cannot find this machine's Debian mirror in /etc/apt")
}

fn rustc_output(args: &[&str]) -> Option<String> {
    let mut pinned = std::process::Command::new("rustc");
    pinned.arg("+1.95.0").args(args);
    stdout_of(pinned).or_else(|| {
        let mut plain = std::process::Command::new("rustc");
        plain.args(args);
        stdout_of(plain)
    })
}

fn image_exists(run: &Run, image: &str) -> bool {
    stdout_of(run.docker(&["image", "inspect", image])).is_some()
}

fn label_of(run: &Run, image: &str) -> String {
    let format = format!("{{{{ index .Config.Labels \"{LABEL}\" }}}}");
    stdout_of(run.docker(&["image", "inspect", "-f", &format, image])).unwrap_or_default()
}

/// The image as the registry has it, else the stand-in (stage `target` of
/// its Dockerfile, if given).
fn ensure_image(
    run: &mut Run,
    image: &str,
    name: &str,
    target: Option<&str>,
) -> anyhow::Result<()> {
    super::interrupted()?;
    let dir = run.standins.join(name);
    let documentdb = |file: &str| run.documentdb.join(file).to_string_lossy().into_owned();
    let parts = match name {
        "debian" => vec![
            debian_mirror()?,
            "bookworm".into(),
            "minbase".into(),
            "v1".into(),
        ],
        "mongo" => [
            vec![
                documentdb("documentdb.sh"),
                documentdb("bin/documentdb_gateway"),
            ],
            files_in(&dir),
        ]
        .concat(),
        "rust" => [
            vec![
                rustc_output(&["--version"]).unwrap_or_default(),
                debian_mirror()?,
            ],
            files_in(&dir),
        ]
        .concat(),
        _ => [
            vec![debian_mirror()?],
            files_in(&dir),
            target.map(str::to_owned).into_iter().collect(),
        ]
        .concat(),
    };
    let key = key_of(&parts);
    let label = label_of(run, image);
    if image_exists(run, image) {
        if label.is_empty() {
            run.ok(&format!("{image}: present (not a stand-in)"));
            return Ok(());
        }
        if label == key {
            run.ok(&format!("{image}: stand-in present (key {key})"));
            return Ok(());
        }
    }
    if std::env::var("SHIPPY_STANDINS").as_deref() != Ok("always") && label.is_empty() {
        let seconds = std::env::var("SHIPPY_PULL_TIMEOUT")
            .ok()
            .and_then(|text| text.parse().ok())
            .unwrap_or(60);
        let log = run.logs.join("pull.log");
        let pulled = output_to(
            &mut run.docker(&["pull", "-q", image]),
            &log,
            None,
            Some(Duration::from_secs(seconds)),
        )?;
        if pulled {
            run.ok(&format!("{image}: pulled"));
            return Ok(());
        }
        let said: String = tail(&log, 1).trim_end().chars().take(120).collect();
        run.log(&format!(
            "{image}: no registry answered ({said}); building the stand-in"
        ));
    }
    let started = Instant::now();
    let what = format!("docker build {image}");
    let label_arg = format!("{LABEL}={key}");
    let build = |run: &Run, base: &str, context: &Path| {
        let mut build = run.docker(&["build", "-q", "-t", image, "--label", &label_arg]);
        build.arg("--build-arg").arg(format!("BASE={base}"));
        if let Some(target) = target {
            build.args(["--target", target]);
        }
        build.arg(context);
        build
    };
    match name {
        "debian" => {
            // bookworm-slim is a debootstrap minbase too: the base itself.
            let base = base_image(run)?;
            let command = run.docker(&["build", "-q", "-t", image, "--label", &label_arg, "-"]);
            let dockerfile = format!("FROM {base}\nCMD [\"bash\"]\n");
            run.run_logged_with_input(&what, command, Some(&dockerfile))?;
        }
        "mongo" => {
            let base = documentdb_image(run)?;
            run.run_logged(&what, build(run, &base, &dir))?;
        }
        "rust" => {
            let base = base_image(run)?;
            let context = rust_context(run)?;
            run.run_logged(&what, build(run, &base, &context))?;
            let _ = std::fs::remove_dir_all(&context);
        }
        _ => {
            let base = base_image(run)?;
            run.run_logged(&what, build(run, &base, &dir))?;
        }
    }
    run.ok(&format!(
        "{image}: stand-in built in {}s (key {key})",
        started.elapsed().as_secs()
    ));
    Ok(())
}

/// The bookworm base every Debian stand-in starts from: debootstrap minbase,
/// imported. The rootfs tarball stays in the cache.
fn base_image(run: &Run) -> anyhow::Result<String> {
    let mirror = debian_mirror()?;
    let key = key_of(&[
        "bookworm".into(),
        "minbase".into(),
        mirror.clone(),
        "v1".into(),
    ]);
    let image = format!("shippy-standin/bookworm:{key}");
    if image_exists(run, &image) {
        return Ok(image);
    }
    let rootfs = run.cache.join("rootfs");
    let tarball = rootfs.join(format!("bookworm-minbase-{key}.tar"));
    if std::fs::metadata(&tarball).map_or(true, |meta| meta.len() == 0) {
        if !crate::provision::have("debootstrap") {
            crate::provision::apt(&["debootstrap"])?;
        }
        let root = rootfs.join(format!("bookworm-{key}.tmp"));
        std::fs::create_dir_all(&rootfs)
            .with_context(|| format!("cannot create {}", rootfs.display()))?;
        remove_tree(&root);
        std::fs::create_dir_all(&root)
            .with_context(|| format!("cannot create {}", root.display()))?;
        run.log(&format!("debootstrap bookworm (minbase) from {mirror}"));
        let mut debootstrap = run.command("debootstrap");
        debootstrap
            .args(["--variant=minbase", "bookworm"])
            .arg(&root)
            .arg(&mirror);
        run.run_logged("debootstrap bookworm", debootstrap)?;
        for dir in ["var/cache/apt/archives", "var/lib/apt/lists"] {
            for entry in std::fs::read_dir(root.join(dir))
                .into_iter()
                .flatten()
                .flatten()
            {
                let path = entry.path();
                let is_deb = path.extension().is_some_and(|ext| ext == "deb");
                if dir.ends_with("lists") || is_deb {
                    remove_tree(&path);
                }
            }
        }
        let partial = tarball.with_extension("tar.tmp");
        pack(run, &root, &partial, &[])?;
        std::fs::rename(&partial, &tarball)
            .with_context(|| format!("cannot rename {}", partial.display()))?;
        remove_tree(&root);
    }
    let mut import = run.docker(&["import"]);
    import.arg(&tarball).arg(&image);
    run.run_logged("docker import bookworm", import)?;
    Ok(image)
}

/// `rm -rf --one-file-system`: never into something still mounted inside.
fn remove_tree(path: &Path) {
    let _ = std::process::Command::new("rm")
        .args(["-rf", "--one-file-system"])
        .arg(path)
        .status();
}

/// Tars `root` into `tarball` (numeric owners, `exclude` patterns).
fn pack(run: &Run, root: &Path, tarball: &Path, exclude: &[&str]) -> anyhow::Result<()> {
    let mut tar = run.command("tar");
    tar.arg("--numeric-owner").arg("-C").arg(root);
    for pattern in exclude {
        tar.arg(format!("--exclude={pattern}"));
    }
    tar.arg("-cf").arg(tarball).arg(".");
    let status = tar.status().context("cannot run tar")?;
    if !status.success() {
        bail!("cannot pack {} into {}", root.display(), tarball.display());
    }
    Ok(())
}

/// MongoDB's stand-in starts from the DocumentDB tool's chroot (Debian sid,
/// PostgreSQL 18 + documentdb), prepared by its own `up`, then imported.
fn documentdb_image(run: &Run) -> anyhow::Result<String> {
    let tool = &run.documentdb;
    let key = key_of(&[
        "documentdb".into(),
        tool.join("documentdb.sh").to_string_lossy().into_owned(),
        tool.join("bin/documentdb_gateway")
            .to_string_lossy()
            .into_owned(),
    ]);
    let image = format!("shippy-standin/documentdb:{key}");
    if image_exists(run, &image) {
        return Ok(image);
    }
    let cache = run.cache.join("documentdb");
    let rootfs = run.cache.join("rootfs");
    std::fs::create_dir_all(&rootfs)
        .with_context(|| format!("cannot create {}", rootfs.display()))?;
    let script = tool.join("documentdb.sh");
    if !script.is_file() {
        bail!(
            "no {} to build mongo:7's stand-in (set SHIPPY_DOCUMENTDB_DIR)",
            script.display()
        );
    }
    run.log("preparing the DocumentDB chroot with documentdb.sh (first use only)");
    let ports = spare_ports::<2>()?;
    let mut up = run.command(&script.to_string_lossy());
    up.env("DOCUMENTDB_CACHE", &cache).args([
        "up".to_owned(),
        "--port".into(),
        ports[0].to_string(),
        "--pg-port".into(),
        ports[1].to_string(),
    ]);
    run.run_logged("documentdb.sh up", up)?;
    let mut down = run.command(&script.to_string_lossy());
    down.env("DOCUMENTDB_CACHE", &cache).arg("down");
    run.run_logged("documentdb.sh down", down)?;
    let root = cache.join("root");
    let prefix = format!("{}/", root.display());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    if mounts
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1))
        .any(|point| point.starts_with(&prefix))
    {
        bail!("something is still mounted under {}", root.display());
    }
    let tarball = rootfs.join(format!("documentdb-{key}.tar"));
    pack(
        run,
        &root,
        &tarball,
        &[
            "./proc/*",
            "./dev/shm/*",
            "./var/lib/documentdb/postgres.log",
        ],
    )
    .context("cannot pack the DocumentDB chroot")?;
    let mut import = run.docker(&["import"]);
    import.arg(&tarball).arg(&image);
    run.run_logged("docker import documentdb", import)?;
    let _ = std::fs::remove_file(&tarball);
    Ok(image)
}

/// rust:1.95-slim-bookworm's stand-in carries this machine's toolchain: its
/// build context (the Dockerfile and the toolchain's bin, lib and libexec).
fn rust_context(run: &Run) -> anyhow::Result<PathBuf> {
    let context = run.cache.join("context/rust");
    let toolchain = PathBuf::from(
        rustc_output(&["--print", "sysroot"]).context("rustc does not print its sysroot")?,
    );
    let mut rustc = std::process::Command::new(toolchain.join("bin/rustc"));
    rustc.arg("--version");
    let version = stdout_of(rustc).unwrap_or_default();
    if !version.starts_with("rustc 1.95.") {
        bail!(
            "the host's Rust toolchain at {} is not 1.95",
            toolchain.display()
        );
    }
    remove_tree(&context);
    std::fs::create_dir_all(context.join("toolchain"))
        .with_context(|| format!("cannot create {}", context.display()))?;
    std::fs::copy(
        run.standins.join("rust/Dockerfile"),
        context.join("Dockerfile"),
    )
    .context("cannot copy the rust stand-in's Dockerfile")?;
    let mut copy = run.command("cp");
    copy.arg("-a")
        .arg(toolchain.join("bin"))
        .arg(toolchain.join("lib"));
    if toolchain.join("libexec").is_dir() {
        copy.arg(toolchain.join("libexec"));
    }
    copy.arg(context.join("toolchain"));
    if !copy.status().context("cannot run cp")?.success() {
        bail!("cannot copy the toolchain at {}", toolchain.display());
    }
    Ok(context)
}

/// The images docker-compose.yml and the Dockerfile name (FROM lines that
/// name an earlier stage are not images), sorted, without shippy-rs's own.
fn named_images(repo: &Path) -> anyhow::Result<Vec<String>> {
    let mut named = Vec::new();
    for line in read_text(&repo.join("docker-compose.yml"))?.lines() {
        let mut fields = line.split_whitespace();
        if line.starts_with(char::is_whitespace) && fields.next() == Some("image:") {
            named.extend(fields.next().map(str::to_owned));
        }
    }
    let mut stages: Vec<String> = Vec::new();
    for line in read_text(&repo.join("Dockerfile"))?.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields
            .first()
            .is_some_and(|first| first.eq_ignore_ascii_case("FROM"))
        {
            if let Some(image) = fields
                .get(1)
                .filter(|image| !stages.iter().any(|stage| stage == *image))
            {
                named.push((*image).to_owned());
            }
            if fields
                .get(2)
                .is_some_and(|word| word.eq_ignore_ascii_case("AS"))
            {
                stages.extend(fields.get(3).map(|stage| (*stage).to_owned()));
            }
        }
    }
    named.sort();
    named.dedup();
    named.retain(|image| !image.starts_with("shippy-rs:"));
    Ok(named)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hash_words_and_files_as_the_script_did() {
        // printf 'bookworm\nminbase\nhttp://deb.example/debian\nv1\n' | sha256sum | cut -c1-16
        let words = ["bookworm", "minbase", "http://deb.example/debian", "v1"].map(String::from);
        assert_eq!(key_of(&words), "bcb0c82a24b0db42");
        let dir = std::env::temp_dir().join(format!("shippy-dev-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("Dockerfile"), "FROM x\n").unwrap();
        // { printf 'w\n'; echo Dockerfile; printf 'FROM x\n'; } | sha256sum | cut -c1-16
        let parts = vec![
            "w".to_owned(),
            dir.join("Dockerfile").to_string_lossy().into_owned(),
        ];
        assert_eq!(key_of(&parts), "97eb5ca7b75d0664");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn named_images_skip_stages_and_the_project_image() {
        let dir = std::env::temp_dir().join(format!("shippy-dev-named-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("docker-compose.yml"),
            "services:\n  a:\n    image: mongo:7\n  b:\n    image: shippy-rs:dev\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("Dockerfile"),
            "FROM rust:1 AS chef\nFROM chef AS planner\nfrom debian:12 as runtime\n",
        )
        .unwrap();
        assert_eq!(
            named_images(&dir).unwrap(),
            ["debian:12", "mongo:7", "rust:1"]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
