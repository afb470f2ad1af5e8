//! Which part of a batch this process does: the index and count, from flags or from the cluster
//! engine's own variables, and the stable assignment of a case to a part.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{BatchError, Result};

/// One part of a batch split `count` ways: this process does the cases whose
/// [`part_of`] is `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawPart")]
pub struct Part {
    index: u32,
    count: u32,
}

/// A part as stored, checked by [`Part::new`] when read.
#[derive(Deserialize)]
struct RawPart {
    index: u32,
    count: u32,
}

impl TryFrom<RawPart> for Part {
    type Error = BatchError;
    fn try_from(raw: RawPart) -> Result<Part> {
        Part::new(raw.index, raw.count)
    }
}

/// The part a case belongs to when a batch is split `count` ways: the first 8 bytes of the
/// SHA-256 of the case name (its UTF-8 bytes), read as a big-endian integer, modulo `count`.
///
/// It depends on the case's own name only, so cases added to the folder later never move the
/// cases already assigned, and anyone can check it without flare:
/// `printf %s CASE | sha256sum | cut -c1-16` is the integer in hexadecimal.
/// A `count` of 0 is taken as 1.
pub fn part_of(case: &str, count: u32) -> u32 {
    let digest = Sha256::digest(case.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) % u64::from(count.max(1))) as u32
}

/// A cluster engine that starts one process per part and tells it its index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// A Slurm job array (`sbatch --array=0-N`): `SLURM_ARRAY_TASK_ID`, and the part count from
    /// `SLURM_ARRAY_TASK_COUNT` unless given.
    Slurm,
    /// A Kubernetes Indexed Job: `JOB_COMPLETION_INDEX`; the part count must be given (the
    /// Job's `completions`, which Kubernetes does not pass to the pod).
    Kubernetes,
}

impl Part {
    /// Part `index` (from 0) of `count`.
    pub fn new(index: u32, count: u32) -> Result<Part> {
        if count == 0 {
            return Err(BatchError::BadPart {
                index: index.into(),
                count: 0,
                detail: "the number of parts must be at least 1".to_string(),
            });
        }
        if index >= count {
            return Err(BatchError::BadPart {
                index: index.into(),
                count: count.into(),
                detail: format!("part indices run from 0 to {}", count - 1),
            });
        }
        Ok(Part { index, count })
    }

    /// The whole batch: part 0 of 1.
    pub fn whole() -> Part {
        Part { index: 0, count: 1 }
    }

    /// This part's index, from 0.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The number of parts.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Whether the batch is split at all.
    pub fn is_split(&self) -> bool {
        self.count > 1
    }

    /// Whether `case` belongs to this part ([`part_of`]).
    pub fn contains(&self, case: &str) -> bool {
        part_of(case, self.count) == self.index
    }

    /// The part the cluster engine gives this process, read through `var` (the process's
    /// environment, or a map in tests). `count` is the number of parts when given explicitly;
    /// for Slurm it is otherwise the array's size, accepted only for an array indexed 0..N-1
    /// (a resubmitted task such as `--array=2` must be told the count). A variable that is
    /// missing or malformed is an error, never a silent whole batch.
    pub fn from_env(
        engine: Engine,
        count: Option<u32>,
        var: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Part> {
        match engine {
            Engine::Slurm => slurm(count, var),
            Engine::Kubernetes => kubernetes(count, var),
        }
    }
}

impl std::fmt::Display for Part {
    /// `part 2 of 4` with the index from 0, as the engines number their tasks.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "part {} of {}", self.index, self.count)
    }
}

fn number(var: &'static str, value: String) -> Result<u32> {
    value.trim().parse::<u32>().map_err(|_| BatchError::BadEnv {
        var,
        value,
        detail: "not a whole number from 0 to 4294967295".to_string(),
    })
}

fn required(var: &'static str, hint: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<u32> {
    match lookup(var) {
        Some(v) => number(var, v),
        None => Err(BatchError::MissingEnv {
            var,
            hint: hint.to_string(),
        }),
    }
}

fn optional(var: &'static str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Option<u32>> {
    lookup(var).map(|v| number(var, v)).transpose()
}

fn slurm(count: Option<u32>, var: &dyn Fn(&str) -> Option<String>) -> Result<Part> {
    let hint = "--part-from-env slurm runs inside a Slurm job array \
                (sbatch --array=0-N scripts/cluster/slurm-array.sbatch ...)";
    let id = required("SLURM_ARRAY_TASK_ID", hint, var)?;
    let min = optional("SLURM_ARRAY_TASK_MIN", var)?;
    let max = optional("SLURM_ARRAY_TASK_MAX", var)?;
    let count = match count {
        Some(n) => {
            if let Some(max) = max.filter(|&m| m >= n) {
                return Err(BatchError::BadEnv {
                    var: "SLURM_ARRAY_TASK_MAX",
                    value: max.to_string(),
                    detail: format!(
                        "the array reaches index {max} but the batch has {n} parts \
                         (indices 0 to {})",
                        n.saturating_sub(1)
                    ),
                });
            }
            n
        }
        None => {
            let n = required(
                "SLURM_ARRAY_TASK_COUNT",
                "this Slurm is too old to say the array's size: give the number of parts \
                 (--num-parts, or FLARE_NUM_PARTS for the sbatch recipe)",
                var,
            )?;
            // Only an array indexed 0..N-1 says how many parts there are; a resubmitted task
            // (--array=2) or a stepped array would silently split the batch differently.
            if min.unwrap_or(0) != 0 || max.is_some_and(|m| m.checked_add(1) != Some(n)) {
                return Err(BatchError::BadEnv {
                    var: "SLURM_ARRAY_TASK_COUNT",
                    value: n.to_string(),
                    detail: format!(
                        "the array is not indexed 0 to {} (SLURM_ARRAY_TASK_MIN={}, \
                         SLURM_ARRAY_TASK_MAX={}), so its size is not the number of parts: \
                         give it (--num-parts, or FLARE_NUM_PARTS for the sbatch recipe), \
                         as when resubmitting some tasks of an array",
                        n.saturating_sub(1),
                        min.map_or("unset".to_string(), |v| v.to_string()),
                        max.map_or("unset".to_string(), |v| v.to_string()),
                    ),
                });
            }
            n
        }
    };
    Part::new(id, count)
}

fn kubernetes(count: Option<u32>, var: &dyn Fn(&str) -> Option<String>) -> Result<Part> {
    let id = required(
        "JOB_COMPLETION_INDEX",
        "--part-from-env k8s runs in a pod of a Kubernetes Job with completionMode: Indexed",
        var,
    )?;
    let Some(count) = count else {
        return Err(BatchError::BadPart {
            index: id.into(),
            count: 0,
            detail: "Kubernetes does not tell a pod how many completions its Job has: give \
                     --num-parts, equal to the Job's spec.completions"
                .to_string(),
        });
    };
    Part::new(id, count)
}

/// The engine's name for this process, for the records: `slurm job 12_3` (array job 12, task 3),
/// `slurm job 12`, or `kubernetes index 3 (pod NAME)`; `None` outside both.
pub fn engine_job(var: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    if let (Some(job), Some(task)) = (var("SLURM_ARRAY_JOB_ID"), var("SLURM_ARRAY_TASK_ID")) {
        return Some(format!("slurm job {job}_{task}"));
    }
    if let Some(job) = var("SLURM_JOB_ID") {
        return Some(format!("slurm job {job}"));
    }
    let index = var("JOB_COMPLETION_INDEX")?;
    Some(match var("HOSTNAME") {
        Some(pod) => format!("kubernetes index {index} (pod {pod})"),
        None => format!("kubernetes index {index}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn assignment_is_sha256_of_the_name() {
        // The first 16 hex digits from coreutils, independently of this code:
        //   printf %s abc | sha256sum | cut -c1-16
        for (name, hex) in [("", "e3b0c44298fc1c14"), ("abc", "ba7816bf8f01cfea")] {
            let v = u64::from_str_radix(hex, 16).unwrap();
            for n in [1u32, 2, 3, 4, 7, 1000] {
                assert_eq!(part_of(name, n), (v % u64::from(n)) as u32, "{name:?} {n}");
            }
        }
        assert_eq!(part_of("abc", 0), 0);
    }

    #[test]
    fn adding_cases_never_moves_the_others() {
        let before: Vec<String> = (0..50).map(|i| format!("case_{i:03}")).collect();
        let parts: Vec<u32> = before.iter().map(|c| part_of(c, 4)).collect();
        let after: Vec<String> = (0..500).map(|i| format!("case_{i:03}")).collect();
        for (c, p) in before.iter().zip(&parts) {
            assert!(after.contains(c));
            assert_eq!(part_of(c, 4), *p);
        }
        // Every case in exactly one part, and all four parts used.
        let mut used = [0usize; 4];
        for c in &after {
            let owners: Vec<u32> = (0..4)
                .filter(|&k| Part::new(k, 4).unwrap().contains(c))
                .collect();
            assert_eq!(owners.len(), 1, "{c}");
            used[owners[0] as usize] += 1;
        }
        assert!(used.iter().all(|&n| n > 80), "{used:?}");
    }

    #[test]
    fn parts_are_checked() {
        assert!(Part::new(0, 1).is_ok());
        assert!(Part::new(3, 4).is_ok());
        let e = Part::new(4, 4).unwrap_err().to_string();
        assert!(e.contains("part 4 of 4") && e.contains("0 to 3"), "{e}");
        assert!(
            Part::new(0, 0)
                .unwrap_err()
                .to_string()
                .contains("at least 1")
        );
        assert_eq!(Part::new(2, 4).unwrap().to_string(), "part 2 of 4");
        assert!(!Part::whole().is_split());
    }

    #[test]
    fn slurm_array_gives_index_and_size() {
        let v = env(&[
            ("SLURM_ARRAY_TASK_ID", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_MAX", "3"),
        ]);
        assert_eq!(
            Part::from_env(Engine::Slurm, None, &v).unwrap(),
            Part::new(2, 4).unwrap()
        );
        // An explicit count wins, as long as the array fits in it.
        assert_eq!(
            Part::from_env(Engine::Slurm, Some(8), &v).unwrap(),
            Part::new(2, 8).unwrap()
        );
        let e = Part::from_env(Engine::Slurm, Some(3), &v)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("SLURM_ARRAY_TASK_MAX") && e.contains("3 parts"),
            "{e}"
        );
    }

    #[test]
    fn a_resubmitted_slurm_task_must_be_told_the_count() {
        // sbatch --array=2: Slurm says MIN=MAX=2, COUNT=1.
        let v = env(&[
            ("SLURM_ARRAY_TASK_ID", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "1"),
            ("SLURM_ARRAY_TASK_MIN", "2"),
            ("SLURM_ARRAY_TASK_MAX", "2"),
        ]);
        let e = Part::from_env(Engine::Slurm, None, &v)
            .unwrap_err()
            .to_string();
        assert!(e.contains("FLARE_NUM_PARTS") && e.contains("MIN=2"), "{e}");
        assert_eq!(
            Part::from_env(Engine::Slurm, Some(4), &v).unwrap(),
            Part::new(2, 4).unwrap()
        );
    }

    #[test]
    fn missing_or_bad_variables_are_errors_naming_them() {
        let e = Part::from_env(Engine::Slurm, None, &env(&[("SLURM_JOB_ID", "7")]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("SLURM_ARRAY_TASK_ID is not set"), "{e}");
        let e = Part::from_env(
            Engine::Slurm,
            Some(4),
            &env(&[("SLURM_ARRAY_TASK_ID", "x")]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("SLURM_ARRAY_TASK_ID=\"x\""), "{e}");
        let e = Part::from_env(Engine::Kubernetes, Some(4), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("JOB_COMPLETION_INDEX is not set"), "{e}");
        let k = env(&[("JOB_COMPLETION_INDEX", "3")]);
        let e = Part::from_env(Engine::Kubernetes, None, &k)
            .unwrap_err()
            .to_string();
        assert!(e.contains("spec.completions"), "{e}");
        assert_eq!(
            Part::from_env(Engine::Kubernetes, Some(4), &k).unwrap(),
            Part::new(3, 4).unwrap()
        );
        assert!(Part::from_env(Engine::Kubernetes, Some(3), &k).is_err());
    }

    #[test]
    fn engine_job_names_the_task() {
        let v = env(&[("SLURM_ARRAY_JOB_ID", "12"), ("SLURM_ARRAY_TASK_ID", "3")]);
        assert_eq!(engine_job(&v).as_deref(), Some("slurm job 12_3"));
        let v = env(&[("JOB_COMPLETION_INDEX", "1"), ("HOSTNAME", "flare-1-abc")]);
        assert_eq!(
            engine_job(&v).as_deref(),
            Some("kubernetes index 1 (pod flare-1-abc)")
        );
        assert_eq!(engine_job(&env(&[])), None);
    }
}
