//! The size of the images `docker-compose.yml` runs, as the local Docker
//! engine holds them. `make bench` builds none (that takes minutes): `make
//! up` and `make compose-test` do.

use std::{path::Path, process::Output, time::Duration};

use serde::Serialize;
use tokio::process::Command;

/// What `make bench` says where no image has been built.
const NOT_BUILT: &str = "not built (run make compose-test or make up first)";

/// How long one `docker` command may take.
const DOCKER_TIMEOUT: Duration = Duration::from_secs(20);

/// One image the compose file names.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Image {
    pub name: String,
    /// Built by compose from the Dockerfile (the services' own image), not
    /// pulled.
    pub ours: bool,
    /// Its size as the engine reports it, in MiB; `None` if not present.
    pub size_mib: Option<f64>,
    /// A stand-in `make compose-test` built from Debian packages where no
    /// registry answered (docker/standins/): not the upstream image's size.
    pub standin: bool,
}

/// The compose images' sizes, or why there are none.
#[derive(Debug, Clone, Serialize)]
pub struct Images {
    /// Why sizes are missing, where they are.
    pub note: Option<String>,
    pub images: Vec<Image>,
    /// The sizes found, summed (layers two images share counted in each).
    pub total_mib: Option<f64>,
}

impl Images {
    pub fn not_measured(why: &str) -> Self {
        Self {
            note: Some(why.to_owned()),
            images: Vec::new(),
            total_mib: None,
        }
    }

    /// The images' sizes, by asking the local Docker engine about each
    /// image `compose_file` names.
    pub async fn measure(compose_file: &Path) -> Self {
        let text = match std::fs::read_to_string(compose_file) {
            Ok(text) => text,
            Err(error) => {
                return Self::not_measured(&format!(
                    "cannot read {}: {error}",
                    compose_file.display()
                ));
            }
        };
        match docker(&["version", "--format", "{{.Server.Version}}"]).await {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Self::not_measured(&format!("docker is not installed: {NOT_BUILT}"));
            }
            Ok(output) if output.status.success() => {}
            _ => {
                return Self::not_measured(&format!(
                    "no Docker engine answers (DOCKER_HOST or the default socket; make \
                     compose-test's own engine stops when it ends): {NOT_BUILT}"
                ));
            }
        }
        let mut images = Vec::new();
        for (name, ours) in named(&text) {
            let inspected = docker(&[
                "image",
                "inspect",
                "--format",
                "{{.Size}} {{json .Config.Labels}}",
                &name,
            ])
            .await;
            let (size_mib, standin) = match inspected {
                Ok(output) if output.status.success() => {
                    size_and_standin(&String::from_utf8_lossy(&output.stdout))
                }
                _ => (None, false),
            };
            images.push(Image {
                name,
                ours,
                size_mib,
                standin,
            });
        }
        Self::of(images)
    }

    fn of(images: Vec<Image>) -> Self {
        let sizes: Vec<f64> = images.iter().filter_map(|image| image.size_mib).collect();
        let ours_built = images
            .iter()
            .filter(|image| image.ours)
            .all(|image| image.size_mib.is_some());
        Self {
            note: (!ours_built || sizes.is_empty()).then(|| NOT_BUILT.to_owned()),
            total_mib: (!sizes.is_empty()).then(|| sizes.iter().sum()),
            images,
        }
    }

    pub fn markdown(&self) -> String {
        let mut out = String::from("\nThe compose images (docker-compose.yml):");
        if let Some(note) = &self.note {
            out.push_str(&format!(" {note}."));
        }
        out.push('\n');
        if self.images.iter().all(|image| image.size_mib.is_none()) {
            return out;
        }
        out.push_str("\n| image | MiB |\n|---|---:|\n");
        for image in &self.images {
            let what = match (image.ours, image.standin) {
                (true, _) => " (ours: every service and CLI)",
                (false, true) => " (a local stand-in, not the upstream image)",
                (false, false) => "",
            };
            let size = image
                .size_mib
                .map_or_else(|| "not built".to_owned(), |mib| format!("{mib:.1}"));
            out.push_str(&format!("| {}{what} | {size} |\n", image.name));
        }
        if let Some(total) = self.total_mib {
            out.push_str(&format!(
                "| **all of them** (shared layers counted in each) | **{total:.1}** |\n"
            ));
        }
        out
    }
}

/// Runs `docker ARGS`, giving up after [`DOCKER_TIMEOUT`].
async fn docker(args: &[&str]) -> std::io::Result<Output> {
    let output = Command::new("docker")
        .args(args)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(DOCKER_TIMEOUT, output)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

/// The images a compose file names, each once, in order, and whether
/// compose builds it (a `build:` beside its `image:`).
fn named(compose: &str) -> Vec<(String, bool)> {
    let lines: Vec<&str> = compose.lines().collect();
    let mut images: Vec<(String, bool)> = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let Some(value) = line.trim_start().strip_prefix("image:") else {
            continue;
        };
        let name = value
            .split(" #")
            .next()
            .unwrap_or_default()
            .trim()
            .trim_matches(['"', '\'']);
        if name.is_empty() || images.iter().any(|(seen, _)| seen == name) {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        // The keys beside `image:`: the lines after it at the same indent.
        let built = lines[index + 1..]
            .iter()
            .filter(|line| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
            .take_while(|line| line.len() - line.trim_start().len() >= indent)
            .filter(|line| line.len() - line.trim_start().len() == indent)
            .any(|line| line.trim_start().starts_with("build:"));
        images.push((name.to_owned(), built));
    }
    images
}

/// `SIZE LABELS-JSON` as `docker image inspect` prints it: the size in MiB,
/// and whether the labels mark a stand-in.
fn size_and_standin(text: &str) -> (Option<f64>, bool) {
    let (size, labels) = text.trim().split_once(' ').unwrap_or((text.trim(), "null"));
    let size = size
        .parse::<u64>()
        .ok()
        .map(|bytes| bytes as f64 / (1024.0 * 1024.0));
    let standin = serde_json::from_str::<serde_json::Value>(labels)
        .ok()
        .and_then(|labels| labels.get("org.shippy-rs.standin").cloned())
        .is_some_and(|label| label.as_str().is_some_and(|label| !label.is_empty()));
    (size, standin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compose_files_images_are_found_with_ours_marked() {
        let compose = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker-compose.yml"),
        )
        .unwrap();
        let images = named(&compose);
        let ours: Vec<&str> = images
            .iter()
            .filter(|(_, ours)| *ours)
            .map(|(name, _)| name.as_str())
            .collect();
        // One image of ours, named once though every service runs it.
        assert_eq!(ours, ["shippy-rs:dev"], "{images:?}");
        assert!(
            images
                .iter()
                .any(|(name, ours)| name == "postgres:15" && !ours)
        );
        let names: Vec<&String> = images.iter().map(|(name, _)| name).collect();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(names.len(), unique.len(), "{names:?}");

        let text = "x: &x\n  image: \"ours:1\" # built\n  # a comment\n\n  build:\n    context: .\nservices:\n  a:\n    image: theirs:2\n    restart: no\n  build:\n";
        assert_eq!(
            named(text),
            [("ours:1".to_owned(), true), ("theirs:2".to_owned(), false)]
        );
    }

    #[test]
    fn sizes_and_stand_ins_are_read_from_docker_inspect() {
        assert_eq!(
            size_and_standin("104857600 {\"org.shippy-rs.standin\":\"bookworm\"}\n"),
            (Some(100.0), true)
        );
        assert_eq!(size_and_standin("1048576 null"), (Some(1.0), false));
        assert_eq!(
            size_and_standin("1048576 {\"other\":\"x\"}"),
            (Some(1.0), false)
        );
        assert_eq!(size_and_standin("garbage"), (None, false));
    }

    #[test]
    fn an_image_of_ours_not_built_is_said_so() {
        let image = |name: &str, ours, size_mib| Image {
            name: name.into(),
            ours,
            size_mib,
            standin: false,
        };
        let built = Images::of(vec![
            image("ours", true, Some(80.0)),
            image("pg", false, Some(400.0)),
        ]);
        assert_eq!(
            (built.note.as_deref(), built.total_mib),
            (None, Some(480.0))
        );
        assert!(
            built
                .markdown()
                .contains("| ours (ours: every service and CLI) | 80.0 |")
        );
        assert!(built.markdown().contains("| **480.0** |"));
        let missing = Images::of(vec![
            image("ours", true, None),
            image("pg", false, Some(400.0)),
        ]);
        assert_eq!(missing.note.as_deref(), Some(NOT_BUILT));
        assert!(
            missing
                .markdown()
                .contains("| ours (ours: every service and CLI) | not built |")
        );
        let none = Images::of(vec![image("ours", true, None)]);
        assert_eq!(none.total_mib, None);
        assert!(none.markdown().contains(NOT_BUILT) && !none.markdown().contains("| MiB |"));
    }
}
