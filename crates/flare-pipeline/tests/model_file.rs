//! The two-stage model file: round trip, and every kind of bad file named clearly.
//! The models are tiny and randomly initialised (file plumbing only).

mod common;

use std::path::Path;

use common::{plan, rebuild, tiny_model, tiny_stage};
use flare_model::file;
use flare_pipeline::{
    CARD_KEY_STAGE2, Model, PLAN_KEY, PipelineError, PipelinePlan, RefinePlan, RefineRegion,
};
use flare_testkit::TempDir;

fn err_of(bytes: &[u8]) -> String {
    match Model::from_bytes(bytes, Path::new("/x/model.safetensors")) {
        Ok(_) => panic!("a bad file loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn save_then_load_gives_the_same_model() {
    let t = TempDir::new("pipeline-model-round-trip");
    let m = tiny_model();
    let path = t.join("both.safetensors");
    m.save(&path).unwrap();
    // Nothing but the file is left in the folder (the temporary was renamed).
    let names: Vec<_> = std::fs::read_dir(t.path()).unwrap().collect();
    assert_eq!(names.len(), 1);
    let back = Model::load(&path).unwrap();
    assert_eq!(back.plan(), m.plan());
    assert_eq!(back.stage_cards(), m.stage_cards());
    for (a, b) in back.networks().iter().zip(m.networks()) {
        assert_eq!(*a, b);
    }
    assert!(
        back.describe().starts_with("tiny-random: stage 1 0 steps"),
        "{}",
        back.describe()
    );
    // The file is one safetensors file whose tensors all carry a stage prefix.
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert!(
        st.names()
            .iter()
            .all(|n| n.starts_with("stage1.") || n.starts_with("stage2."))
    );
    assert!(st.names().contains(&"stage2.head.weight"));
}

#[test]
fn stage2_class_offsets_are_stored_in_the_plan_and_shown() {
    let t = TempDir::new("pipeline-model-offsets");
    let m = tiny_model();
    // None: the plan's JSON has no such key (older readers see the same file).
    let json = serde_json::to_string(m.plan()).unwrap();
    assert!(!json.contains("stage2_class_offsets"), "{json}");
    let offsets = vec![0.0, 0.0, 0.0, 0.0, 0.75];
    let calibrated = m
        .clone()
        .with_stage2_class_offsets(offsets.clone())
        .unwrap();
    let path = t.join("calibrated.safetensors");
    calibrated.save(&path).unwrap();
    let back = Model::load(&path).unwrap();
    assert_eq!(back.plan().stage2_class_offsets, offsets);
    assert!(
        back.describe()
            .ends_with("(stage-2 class offsets [0.0, 0.0, 0.0, 0.0, 0.75])"),
        "{}",
        back.describe()
    );
    // One value per class of stage 2, each within the bound, whichever way the model is built.
    let e = m
        .clone()
        .with_stage2_class_offsets(vec![1.0; 4])
        .unwrap_err();
    assert!(
        e.to_string().contains("4 values for stage 2's 5 classes"),
        "{e}"
    );
    let e = m.with_stage2_class_offsets(vec![f32::NAN; 5]).unwrap_err();
    assert!(e.to_string().contains("NaN is not a number"), "{e}");
    let [s1, s2] = calibrated.networks();
    let [c1, c2] = calibrated.stage_cards();
    let plan = PipelinePlan {
        stage2_class_offsets: vec![0.5; 6],
        ..calibrated.plan().clone()
    };
    let e =
        Model::from_parts((s1.clone(), c1.clone()), (s2.clone(), c2.clone()), plan).unwrap_err();
    assert!(e.to_string().contains("6 values"), "{e}");
}

#[test]
fn test_time_mirroring_is_stored_in_the_plan_and_shown() {
    let t = TempDir::new("pipeline-model-mirror");
    let m = tiny_model();
    let plan = PipelinePlan {
        mirror_axes: vec![0, 2],
        ..m.plan().clone()
    };
    let [s1, s2] = m.networks();
    let [c1, c2] = m.stage_cards();
    let mirrored =
        Model::from_parts((s1.clone(), c1.clone()), (s2.clone(), c2.clone()), plan).unwrap();
    let path = t.join("mirrored.safetensors");
    mirrored.save(&path).unwrap();
    let back = Model::load(&path).unwrap();
    assert_eq!(back.plan().mirror_axes, vec![0, 2]);
    assert!(
        back.describe()
            .ends_with("(stage 2 mirrored along axes [0, 2]: 4 passes)"),
        "{}",
        back.describe()
    );
    // A plan without mirroring does not write the key (older readers see the same JSON).
    let json = serde_json::to_string(m.plan()).unwrap();
    assert!(!json.contains("mirror_axes"), "{json}");
}

#[test]
fn a_stage2_ensemble_round_trips_and_bad_members_are_named() {
    let t = TempDir::new("pipeline-model-members");
    let m = tiny_model();
    let b = tiny_stage(7, [8, 12, 16]);
    // A member may be wider or deeper than stage 2: only labels, grid and intensity must match.
    let c = {
        let cfg = flare_model::UNetConfig::standard(1, 5, &[6, 12, 24]);
        let mut card = flare_model::ModelCard::untrained(cfg.clone());
        card.preprocessing = m.stage_cards()[1].preprocessing.clone();
        (flare_model::UNet::init(&cfg, 8).unwrap(), card)
    };
    let ens = m
        .clone()
        .with_stage2_members(vec![b.clone(), c.clone()])
        .unwrap();
    assert_eq!(ens.plan().stage2_members, 3);
    assert!(
        ens.describe()
            .ends_with("(stage 2 an ensemble of 3 networks)"),
        "{}",
        ens.describe()
    );
    let path = t.join("ensemble.safetensors");
    ens.save(&path).unwrap();
    let back = Model::load(&path).unwrap();
    assert_eq!(back.plan(), ens.plan());
    let nets = back.stage2_networks();
    assert_eq!(nets.len(), 3);
    assert_eq!(*nets[0], *m.networks()[1]);
    assert_eq!(*nets[1], b.0);
    assert_eq!(*nets[2], c.0);
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert!(st.names().contains(&"stage2m2.head.weight"));
    assert!(st.names().contains(&"stage2m3.head.weight"));
    // One network: the plan's JSON has no such key (older readers see the same file).
    let json = serde_json::to_string(m.plan()).unwrap();
    assert!(!json.contains("stage2_members"), "{json}");

    // A member on another grid, or with other labels, is refused naming the member.
    let other_grid = tiny_stage(9, [8, 16, 16]);
    let e = m
        .clone()
        .with_stage2_members(vec![other_grid])
        .unwrap_err()
        .to_string();
    assert!(e.contains("member 2") && e.contains("grid"), "{e}");
    let mut other_labels = tiny_stage(9, [8, 12, 16]);
    other_labels.1.labels = flare_labels::LabelSet::new(vec![
        flare_labels::Label::background(),
        flare_labels::Label::organ(1, "a"),
        flare_labels::Label::organ(2, "b"),
        flare_labels::Label::organ(3, "c"),
        flare_labels::Label::organ(4, "d"),
    ])
    .unwrap();
    let e = m
        .clone()
        .with_stage2_members(vec![other_labels])
        .unwrap_err()
        .to_string();
    assert!(e.contains("member 2") && e.contains("labels"), "{e}");
    // A file whose plan names more members than it holds is refused, naming the missing card.
    let e = err_of(&rebuild(
        &bytes,
        |n| (!n.starts_with("stage2m3.")).then(|| n.to_string()),
        |meta| {
            meta.remove(&flare_pipeline::member_card_key(3));
        },
    ));
    assert!(e.contains("flare.model_card.stage2.m3"), "{e}");
    // And a member tensor the plan does not name is an unexpected tensor.
    let e = err_of(&rebuild(
        &bytes,
        |n| Some(n.to_string()),
        |meta| {
            let plan = serde_json::to_string(&PipelinePlan {
                stage2_members: 2,
                ..ens.plan().clone()
            })
            .unwrap();
            meta.insert(PLAN_KEY.into(), plan);
        },
    ));
    assert!(e.contains("unexpected tensor `stage2m3."), "{e}");
}

#[test]
fn from_stage_files_combines_two_training_outputs() {
    let t = TempDir::new("pipeline-model-stages");
    let (s1, s2) = (tiny_stage(3, [8, 16, 16]), tiny_stage(4, [8, 12, 16]));
    file::save(&t.join("s1.safetensors"), &s1.0, &s1.1).unwrap();
    file::save(&t.join("s2.safetensors"), &s2.0, &s2.1).unwrap();
    let m = Model::from_stage_files(&t.join("s1.safetensors"), &t.join("s2.safetensors"), plan())
        .unwrap();
    assert_eq!(*m.networks()[1], s2.0);
    assert_eq!(m.stage_cards()[0], &s1.1);
    m.save(&t.join("both.safetensors")).unwrap();
    // A single-stage file given to `load`: say what to do.
    let e = Model::load(&t.join("s1.safetensors")).unwrap_err();
    assert!(matches!(e, PipelineError::SingleStage { .. }));
    let msg = e.to_string();
    assert!(
        msg.contains("s1.safetensors") && msg.contains("flare bundle"),
        "{msg}"
    );
    // A combined file given as a stage.
    let e = Model::from_stage_files(
        &t.join("both.safetensors"),
        &t.join("s2.safetensors"),
        plan(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("both.safetensors") && e.contains("already a two-stage model"),
        "{e}"
    );
    // A missing file names it.
    let e = Model::load(&t.join("nope.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope.safetensors"), "{e}");
}

#[test]
fn bad_files_name_the_file_and_the_problem() {
    let good = tiny_model().to_bytes().unwrap();
    // Truncated.
    let e = err_of(&good[..good.len() / 2]);
    assert!(
        e.contains("/x/model.safetensors") && e.contains("not a valid safetensors"),
        "{e}"
    );
    // Not safetensors at all.
    let e = err_of(b"GIF89a not a model");
    assert!(e.contains("not a flare two-stage model"), "{e}");
    // A stage-2 tensor missing: the file, the stage prefix and the tensor are named.
    let e = err_of(&rebuild(
        &good,
        |n| (n != "stage2.head.bias").then(|| n.to_string()),
        |_| {},
    ));
    assert!(
        e.contains("/x/model.safetensors [stage2.*]") && e.contains("`head.bias`"),
        "{e}"
    );
    // A tensor of neither stage.
    let e = err_of(&rebuild(
        &good,
        |n| {
            Some(if n == "stage1.head.bias" {
                "head.bias".into()
            } else {
                n.to_string()
            })
        },
        |_| {},
    ));
    assert!(e.contains("unexpected tensor `head.bias`"), "{e}");
    // A tensor of the wrong shape: stage 1's head weights put under stage 2's name of another.
    let e = err_of(&rebuild(
        &good,
        |n| match n {
            "stage2.encoder.0.conv1.weight" => None,
            "stage2.encoder.1.conv1.weight" => Some("stage2.encoder.0.conv1.weight".into()),
            _ => Some(n.to_string()),
        },
        |_| {},
    ));
    assert!(e.contains("[stage2.*]") && e.contains("encoder."), "{e}");
    // No plan, a bad plan, a missing card.
    let e = err_of(&rebuild(
        &good,
        |n| Some(n.to_string()),
        |m| {
            m.remove(PLAN_KEY);
        },
    ));
    assert!(e.contains(PLAN_KEY), "{e}");
    let refining = |labels: Vec<u8>, margin: f64, region: RefineRegion| PipelinePlan {
        refine: Some(RefinePlan {
            labels,
            margin,
            region,
        }),
        ..plan()
    };
    let bad_plans = [
        (
            PipelinePlan {
                roi_margin: -1.0,
                ..plan()
            },
            "roi_margin -1",
        ),
        (
            PipelinePlan {
                mirror_axes: vec![0, 0],
                ..plan()
            },
            "mirror_axes [0, 0]",
        ),
        (
            PipelinePlan {
                mirror_axes: vec![3],
                ..plan()
            },
            "mirror_axes [3]",
        ),
        (
            PipelinePlan {
                stage2_members: 0,
                ..plan()
            },
            "stage2_members 0",
        ),
        (
            PipelinePlan {
                stage2_members: 9,
                ..plan()
            },
            "stage2_members 9",
        ),
        (
            PipelinePlan {
                stage2_class_offsets: vec![0.0, 0.0, 0.0, 0.0, 11.0],
                ..plan()
            },
            "stage2_class_offsets: 11 is not a number in [-10, 10]",
        ),
        (
            PipelinePlan {
                stage2_class_offsets: vec![0.0, 0.5, 1.0],
                ..plan()
            },
            "stage2_class_offsets has 3 values for stage 2's 5 classes",
        ),
        (
            refining(vec![], 0.25, RefineRegion::OrganBox),
            "refine: no label",
        ),
        (
            refining(vec![1, 1], 0.25, RefineRegion::OrganBox),
            "refine: labels [1, 1] must be organs (> 0), each once",
        ),
        (
            refining(vec![0], 0.25, RefineRegion::OrganBox),
            "refine: labels [0] must be organs",
        ),
        (
            refining(vec![4], 3.0, RefineRegion::OrganBox),
            "refine: margin 3 is not in [0, 2]",
        ),
        (
            refining(vec![1, 3], 0.25, RefineRegion::Stage2Region),
            "refine: margin 0.25 with stage 2's region",
        ),
    ];
    for (bad, message) in bad_plans {
        let bad_plan = serde_json::to_string(&bad).unwrap();
        let e = err_of(&rebuild(
            &good,
            |n| Some(n.to_string()),
            |m| {
                m.insert(PLAN_KEY.into(), bad_plan.clone());
            },
        ));
        assert!(e.contains(message), "{e}");
    }
    let e = err_of(&rebuild(
        &good,
        |n| Some(n.to_string()),
        |m| {
            m.insert(PLAN_KEY.into(), "{not json".into());
        },
    ));
    assert!(e.contains("bad pipeline plan"), "{e}");
    let e = err_of(&rebuild(
        &good,
        |n| Some(n.to_string()),
        |m| {
            m.remove(CARD_KEY_STAGE2);
        },
    ));
    assert!(e.contains(CARD_KEY_STAGE2), "{e}");
    // Stage 2's card with other widths than its tensors.
    let with_widths = |widths: Vec<usize>| {
        rebuild(
            &good,
            |n| Some(n.to_string()),
            |m| {
                let mut card: flare_model::ModelCard =
                    serde_json::from_str(&m[CARD_KEY_STAGE2]).unwrap();
                card.architecture.widths = widths.clone();
                m.insert(
                    CARD_KEY_STAGE2.into(),
                    serde_json::to_string(&card).unwrap(),
                );
            },
        )
    };
    // A card whose architecture disagrees with the tensors (stage 1's card on stage 2).
    let e = err_of(&with_widths(vec![2, 8]));
    assert!(e.contains("[stage2.*]") && e.contains("shape"), "{e}");
    // One with more parameters than the stage's part of the file holds is refused before
    // allocating.
    let e = err_of(&with_widths(vec![6, 8]));
    assert!(
        e.contains("[stage2.*]") && e.contains("bytes of parameters but the file has only"),
        "{e}"
    );
    // NaN weights.
    let e = err_of(&common::rewrite(&good, |n, v| {
        if n == "stage1.head.weight" {
            v[0] = f32::NAN;
        }
    }));
    assert!(e.contains("[stage1.*]") && e.contains("head.weight"), "{e}");
}

/// Plans written before several organs could be refined name one as `"label"`; they read
/// as that one organ in its box, and a plan of today writes `labels` (and `region` only when
/// it is not the organs' box).
#[test]
fn refine_plans_of_one_label_still_read() {
    let old: RefinePlan = serde_json::from_str(r#"{"label":4,"margin":0.25}"#).unwrap();
    assert_eq!(
        old,
        RefinePlan {
            labels: vec![4],
            margin: 0.25,
            region: RefineRegion::OrganBox,
        }
    );
    assert_eq!(
        serde_json::to_string(&old).unwrap(),
        r#"{"labels":[4],"margin":0.25}"#
    );
    let new = RefinePlan {
        labels: vec![1, 3],
        margin: 0.0,
        region: RefineRegion::Stage2Region,
    };
    let json = serde_json::to_string(&new).unwrap();
    assert_eq!(
        json,
        r#"{"labels":[1,3],"margin":0.0,"region":"stage2_region"}"#
    );
    assert_eq!(serde_json::from_str::<RefinePlan>(&json).unwrap(), new);
    assert!(serde_json::from_str::<RefinePlan>(r#"{"label":"x","margin":0.25}"#).is_err());
}

#[test]
fn unusable_cards_are_refused() {
    // A spacing-based grid is not something the pipeline runs.
    let (net, mut card) = tiny_stage(5, [8, 16, 16]);
    card.preprocessing.target_grid = flare_model::card::TargetGrid::Spacing {
        spacing_mm: [2.0; 3],
        patch: [8, 16, 16],
    };
    let e = Model::from_parts((net, card), tiny_stage(6, [8, 12, 16]), plan())
        .unwrap_err()
        .to_string();
    assert!(e.contains("stage 1") && e.contains("not supported"), "{e}");
    // A grid the network cannot take (not divisible by its downsampling).
    let e = Model::from_parts(
        tiny_stage(5, [8, 16, 16]),
        tiny_stage(6, [7, 12, 16]),
        plan(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("stage 2") && e.contains("grid"), "{e}");
    // A window that is not increasing.
    let (net, mut card) = tiny_stage(5, [8, 16, 16]);
    card.preprocessing.hu_window = [300.0, -100.0];
    let e = Model::from_parts(tiny_stage(5, [8, 16, 16]), (net, card), plan())
        .unwrap_err()
        .to_string();
    assert!(e.contains("stage 2") && e.contains("window"), "{e}");
}

#[test]
fn the_bundled_model_loads() {
    let m = Model::bundled().unwrap();
    assert!(m.plan().roi_margin >= 0.0);
    assert_eq!(m.stage_cards()[1].labels.len(), 5, "{}", m.describe());
}

/// The built-in model's cards predate stored label sets (value and name only): they read as
/// FLARE21's set, rules included.
#[test]
fn the_bundled_models_labels_are_flare21() {
    let m = Model::bundled().unwrap();
    for card in m.stage_cards() {
        assert_eq!(card.labels, flare_labels::LabelSet::flare21());
    }
}
