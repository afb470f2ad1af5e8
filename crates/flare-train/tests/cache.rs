//! The preprocessing cache: values, reduction, invalidation, and refusal of bad cases.

mod common;

use std::time::{Duration, SystemTime};

use common::{lps_grid, phantom, write_case, write_pair};
use flare_testkit::TempDir;
use flare_train::{Cache, Dataset, PreprocessConfig, TrainError};

const SHAPE: [usize; 3] = [20, 18, 12];

fn touch(path: &std::path::Path) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() + Duration::from_secs(5))
        .unwrap();
}

#[test]
fn only_what_changed_is_rebuilt() {
    let t = TempDir::new("train-cache-inval");
    let data = t.join("data");
    std::fs::create_dir_all(&data).unwrap();
    for n in ["a", "b", "c"] {
        write_case(&data, n, SHAPE);
    }
    let d = Dataset::open(&data).unwrap();
    let cfg = PreprocessConfig::default();
    let cache_dir = t.join("cache");
    let (c1, r) = Cache::build(&d, &cfg, &cache_dir).unwrap();
    assert_eq!(r.built, ["a", "b", "c"]);
    assert!(r.reused.is_empty());

    let (c2, r) = Cache::build(&d, &cfg, &cache_dir).unwrap();
    assert!(r.built.is_empty());
    assert_eq!(r.reused, ["a", "b", "c"]);
    assert_eq!(
        c1.cases(),
        c2.cases(),
        "loaded cache differs from the built one"
    );

    // A touched label file rebuilds that case only.
    touch(&data.join("b.nii.gz"));
    let (_, r) = Cache::build(&d, &cfg, &cache_dir).unwrap();
    assert_eq!(r.built, ["b"]);
    assert_eq!(r.reused, ["a", "c"]);
    // Old files of the rebuilt case are gone: two data files per case.
    let n_data = std::fs::read_dir(&cache_dir)
        .unwrap()
        .filter(|e| {
            let p = e.as_ref().unwrap().path();
            matches!(p.extension().and_then(|x| x.to_str()), Some("img" | "lab"))
        })
        .count();
    assert_eq!(n_data, 6);

    // A changed config rebuilds everything.
    let cfg2 = PreprocessConfig {
        window_hu: [-150.0, 250.0],
        ..cfg.clone()
    };
    let (_, r) = Cache::build(&d, &cfg2, &cache_dir).unwrap();
    assert_eq!(r.built, ["a", "b", "c"]);
    let (_, r) = Cache::build(&d, &cfg2, &cache_dir).unwrap();
    assert_eq!(r.reused, ["a", "b", "c"]);

    // A truncated data file (a crash, a concurrent writer) is rebuilt, not used.
    let (before, _) = Cache::build(&d, &cfg2, &cache_dir).unwrap();
    let img = std::fs::read_dir(&cache_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "img"))
        .unwrap();
    let name = img.file_name().unwrap().to_str().unwrap().to_owned();
    std::fs::write(&img, [0u8; 10]).unwrap();
    let (after, r) = Cache::build(&d, &cfg2, &cache_dir).unwrap();
    assert_eq!(r.built.len(), 1, "{r:?}");
    assert!(
        name.starts_with(&format!("{}-", r.built[0])),
        "{name} {r:?}"
    );
    assert_eq!(before.cases(), after.cases());
    // No temporary file is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(&cache_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn window_normalisation_reorientation_and_boxes() {
    let t = TempDir::new("train-cache-values");
    let g = lps_grid(SHAPE);
    let (mut img, lab) = phantom(g);
    // Full-range values: clipped to the window.
    img.data_mut()[g.linear_index([3, 4, 5])] = 1500.0;
    img.data_mut()[g.linear_index([4, 4, 5])] = 100.0;
    write_pair(t.path(), t.path(), "x", &img, &lab);
    let d = Dataset::open(t.path()).unwrap();
    let (cache, _) = Cache::build(&d, &PreprocessConfig::default(), t.join("cache")).unwrap();
    let c = &cache.cases()[0];
    assert_eq!(c.shape(), SHAPE);
    // RAS: the LPS grid's i and j are flipped, k kept.
    let at =
        |[i, j, k]: [usize; 3]| (SHAPE[0] - 1 - i) + SHAPE[0] * ((SHAPE[1] - 1 - j) + SHAPE[1] * k);
    let v = |ijk| c.image()[at(ijk)] as f64 / 65535.0;
    assert!((v([3, 4, 5]) - 1.0).abs() < 1e-9);
    assert!((v([4, 4, 5]) - 225.0 / 400.0).abs() < 1e-5);
    assert_eq!(v([0, 0, 0]), 0.0); // -1000 HU air
    for k in 0..SHAPE[2] {
        for j in 0..SHAPE[1] {
            for i in 0..SHAPE[0] {
                assert_eq!(
                    c.labels()[at([i, j, k])],
                    lab.data()[g.linear_index([i, j, k])]
                );
            }
        }
    }
    let geom = c.meta().geometry().unwrap();
    assert!(geom.direction()[0][0] > 0.99 && geom.direction()[1][1] > 0.99);
    // Same world position for the same voxel after reorientation.
    let w_old = g.index_to_world([3.0, 4.0, 5.0]);
    let w_new = geom.index_to_world([(SHAPE[0] - 4) as f64, (SHAPE[1] - 5) as f64, 5.0]);
    assert!((0..3).all(|a| (w_old[a] - w_new[a]).abs() < 1e-4));
    // Bounding boxes and counts, from the labels directly.
    for organ in 1..=4u8 {
        let mut lo = [usize::MAX; 3];
        let mut hi = [0; 3];
        let mut n = 0;
        for k in 0..SHAPE[2] {
            for j in 0..SHAPE[1] {
                for i in 0..SHAPE[0] {
                    if c.labels()[i + SHAPE[0] * (j + SHAPE[1] * k)] == organ {
                        n += 1;
                        for (a, x) in [i, j, k].into_iter().enumerate() {
                            lo[a] = lo[a].min(x);
                            hi[a] = hi[a].max(x + 1);
                        }
                    }
                }
            }
        }
        assert!(n > 0);
        assert_eq!(c.meta().organ_boxes[organ as usize - 1], Some([lo, hi]));
        assert_eq!(c.meta().label_counts[organ as usize], n);
    }
}

#[test]
fn reduced_cache_grid_keeps_aspect() {
    let t = TempDir::new("train-cache-reduce");
    write_case(t.path(), "x", [24, 20, 16]);
    let d = Dataset::open(t.path()).unwrap();
    let cfg = PreprocessConfig {
        max_shape: Some([12, 12, 12]),
        ..PreprocessConfig::default()
    };
    let (cache, _) = Cache::build(&d, &cfg, t.join("cache")).unwrap();
    let c = &cache.cases()[0];
    assert_eq!(c.shape(), [12, 10, 8]);
    assert_eq!(c.meta().source_shape, [24, 20, 16]);
    assert!((c.meta().spacing_mm[2] - 6.0).abs() < 1e-9);
    assert!(c.labels().iter().all(|&l| l <= 4));
    assert!((1..=4).all(|o| c.meta().label_counts[o] > 0));
}

#[test]
fn bad_case_stops_the_build_before_writing() {
    let t = TempDir::new("train-cache-bad");
    write_case(t.path(), "ok", SHAPE);
    let (img, mut lab) = phantom(lps_grid(SHAPE));
    lab.data_mut()[3] = 200;
    write_pair(t.path(), t.path(), "bad", &img, &lab);
    let d = Dataset::open(t.path()).unwrap();
    let err = Cache::build(&d, &PreprocessConfig::default(), t.join("cache")).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("bad: label values [200]"), "{text}");
    assert!(!t.join("cache/index.json").exists());
    let bad_cfg = PreprocessConfig {
        window_hu: [10.0, -10.0],
        ..PreprocessConfig::default()
    };
    assert!(matches!(
        Cache::build(&d, &bad_cfg, t.join("cache")),
        Err(TrainError::Config(_))
    ));
}

#[test]
fn u16_quantisation_loses_under_a_hundredth_of_a_hu() {
    // Every HU value from -1200 to 3000 in steps of 0.37 HU, clipped to the default window.
    let n = 11_352;
    let g = flare_volume::Geometry::axis_aligned([n, 1, 1], [1.0; 3], [0.0; 3]).unwrap();
    let hu: Vec<f32> = (0..n).map(|v| -1200.0 + 0.37 * v as f32).collect();
    let img = flare_volume::Volume::new(g, hu.clone()).unwrap();
    let lab = flare_volume::Volume::filled(g, 0u8);
    let c = flare_train::preprocess_volumes("q", img, lab, &PreprocessConfig::default()).unwrap();
    let worst_hu = c
        .image()
        .iter()
        .zip(&hu)
        .map(|(&q, &h)| {
            ((q as f64 / 65535.0) * 400.0 - 125.0 - h.clamp(-125.0, 275.0) as f64).abs()
        })
        .fold(0.0f64, f64::max);
    assert!(worst_hu < 0.01, "worst quantisation error {worst_hu} HU");
}
