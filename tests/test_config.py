import re
from pathlib import Path

import pytest
import yaml

from distillbench.config import StudyConfig, load_config, training_order
from distillbench.errors import UserError
from distillbench.study.resolve import load_study_config

REPO = Path(__file__).resolve().parents[1]


def test_paper_preset_file_equals_the_schema_defaults():
    preset = yaml.safe_load((REPO / "configs" / "paper.yaml").read_text())
    assert preset == StudyConfig().model_dump(mode="json")


def test_paper_protocol_values():
    cfg = load_config(REPO / "configs" / "paper.yaml")
    assert cfg.models == ["small_cnn", "resnet50", "vgg16", "kd_resnet50", "kd_ensemble"]
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.patience) == (20, 64, 3)
    assert (cfg.kd.temperature, cfg.kd.alpha, cfg.data.val_size) == (3.0, 0.5, 5000)
    assert cfg.zoo["small_cnn"].lr == 1e-3 and cfg.zoo["resnet50"].lr == 1e-4 and cfg.zoo["vgg16"].lr == 1e-4
    # The authors' notebook freezes layers[:-2] of bases built with pooling='avg': no backbone weight trains.
    assert cfg.zoo["resnet50"].trainable_layers == 0 and cfg.zoo["vgg16"].trainable_layers == 0
    # The paper's formula and the notebook have no T^2 on the soft term.
    assert cfg.kd.scale_by_t2 is False
    assert cfg.zoo["kd_ensemble"].teachers == ["resnet50", "vgg16"]
    assert cfg.weights == {"resnet50": "imagenet", "vgg16": "imagenet"}


def test_contract_paths_are_settable():
    cfg = load_config(
        None,
        [
            "models=[small_cnn,resnet50]", "seeds=[7]", "train.epochs=5", "train.batch_size=32", "train.patience=2",
            "data.dir=/x/cifar-10-batches-py", "data.val_size=100", "weights.resnet50=/w/r.pt",
            "weights.vgg16=none", "kd.temperature=4", "kd.alpha=0.25",
        ],
    )  # fmt: skip
    assert cfg.models == ["small_cnn", "resnet50"] and cfg.seeds == [7]
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.patience) == (5, 32, 2)
    assert cfg.data.dir == Path("/x/cifar-10-batches-py") and cfg.data.val_size == 100
    assert cfg.weights == {"resnet50": "/w/r.pt", "vgg16": "none"}
    assert (cfg.kd.temperature, cfg.kd.alpha) == (4.0, 0.25)


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.epoch=5", r"train\.epoch: unknown key \(did you mean train\.epochs\?\)"),
        ("train.epochs=0", r"train\.epochs: Input should be greater than or equal to 1"),
        ("kd.alpha=1.5", r"kd\.alpha: Input should be less than or equal to 1"),
        ("models=[small_cnn,resnet18]", r"unknown model 'resnet18'"),
        ("zoo.resnet50.teachers=[kd_resnet50]", r"own teacher"),
        ("zoo.vgg16.lr=fast", r"zoo\.vgg16\.lr: Input should be a valid number"),
        ("epochs", r"expected KEY=VALUE"),
        ("seed=3", r"seed: unknown key \(did you mean seeds\?\)"),
        ("seeds=[]", r"seeds: the list is empty"),
        ("seeds=[1,1]", r"repeats a seed"),
        ("comparisons=[{a: vgg16, b: lenet, claim: x}]", r"comparisons\.0\.b: unknown model 'lenet'"),
        ("comparisons=[{a: vgg16, b: resnet50, claims: x}]", r"did you mean comparisons\.0\.claim"),
        ("evaluation.ece_bins=1", r"evaluation\.ece_bins: Input should be greater than or equal to 2"),
        # Numbers are finite and in a sane range at config time, not NaN losses or hangs hours later.
        ("zoo.small_cnn.lr=.inf", r"zoo\.small_cnn\.lr: Input should be a finite number"),
        ("zoo.small_cnn.lr=1e300", r"zoo\.small_cnn\.lr: Input should be less than or equal to 10"),
        ("kd.temperature=1e-320", r"kd\.temperature: Input should be greater than or equal to 0\.01"),
        ("kd.temperature=.nan", r"kd\.temperature: Input should be a finite number"),
        ("zoo.small_cnn.warmup_epochs=.inf", r"zoo\.small_cnn\.warmup_epochs: Input should be a finite number"),
        ("evaluation.ece_bins=2000000000", r"evaluation\.ece_bins: Input should be less than or equal to 1000"),
        (
            "evaluation.bootstrap_resamples=100000000000",
            r"evaluation\.bootstrap_resamples: Input should be less than or equal",
        ),
        ("data.split_seed=-1", r"data\.split_seed: Input should be greater than or equal to 0"),
        ("seeds=[-1]", r"seeds: \[-1\] has a seed outside 0\.\.4294967295"),
        ("zoo.small_cnn.weight_decay=5", r"zoo\.small_cnn\.weight_decay: Input should be less than or equal to 1"),
        # Names become directory names: never a path.
        ("zoo={../../x: {arch: small_cnn, lr: 0.001}}", r"zoo\.\.\./\.\./x: '\.\./\.\./x' is not a valid name"),
        ("zoo={/tmp/abs: {arch: small_cnn, lr: 0.001}}", r"'/tmp/abs' is not a valid name"),
        ("name=../escape", r"name: '\.\./escape' is not a valid name"),
    ],
)
def test_bad_values_name_the_key(override, message):
    with pytest.raises(UserError, match=message):
        load_config(None, [override])


def test_bad_config_file(tmp_path):
    with pytest.raises(UserError, match=r"does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochs: [unclosed\n")
    with pytest.raises(UserError, match=r"could not be read as YAML"):
        load_config(bad)
    bad.write_text("trian:\n  epochs: 3\n")
    with pytest.raises(UserError, match=r"trian: unknown key \(did you mean train\?\)"):
        load_config(bad)


def test_teachers_come_first_and_are_added():
    cfg = StudyConfig()
    assert training_order(cfg.zoo, ["kd_ensemble", "small_cnn"]) == ["resnet50", "vgg16", "kd_ensemble", "small_cnn"]
    assert training_order(cfg.zoo, ["vgg16", "kd_resnet50"]) == ["vgg16", "resnet50", "kd_resnet50"]


def test_defaults_repeat_every_model_over_three_seeds_and_test_the_papers_claims():
    cfg = StudyConfig()
    assert cfg.seeds == [0, 1, 2]
    assert [(c.a, c.b) for c in cfg.comparisons] == [
        ("small_cnn", "kd_resnet50"), ("small_cnn", "kd_ensemble"), ("kd_resnet50", "kd_ensemble"), ("vgg16", "resnet50"),
    ]  # fmt: skip
    assert cfg.evaluation.ece_bins == 15


def test_each_claim_is_the_papers_positive_statement():
    """A claim reads "a is more accurate than b" and quotes the paper's numbers in that order, so an
    interval containing 0 means "our data cannot tell", never "the paper is wrong"."""
    for comparison in StudyConfig().comparisons:
        assert " is more accurate than " in comparison.claim and " not " not in comparison.claim
        first, second = (float(x) for x in re.findall(r"(\d+\.\d+)%", comparison.claim))
        assert first > second, comparison.claim


def test_a_mapping_override_merges_into_its_section():
    """--set weights={vgg16: imagenet} changes vgg16 and keeps resnet50's source: replacing the whole
    mapping used to leave resnet50 without weights, and it trained from random init unannounced."""
    cfg = load_config(None, ["weights.resnet50=/w/resnet50.pt", "weights={vgg16: /w/vgg16.pt}"])
    assert cfg.weights == {"resnet50": "/w/resnet50.pt", "vgg16": "/w/vgg16.pt"}
    cfg = load_config(None, ["zoo.vgg16={trainable_layers: 1}"])
    assert cfg.zoo["vgg16"].trainable_layers == 1 and cfg.zoo["vgg16"].arch == "vgg16" and cfg.zoo["vgg16"].lr == 1e-4


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "zoo.small_cnn.arch=lenet",
            r"zoo\.small_cnn\.arch: unknown architecture 'lenet'; known: small_cnn, resnet50, vgg16",
        ),
        (
            "weights.small_cnn=imagenet",
            r"weights\.small_cnn: 'imagenet', but model 'small_cnn' is a small_cnn, whose entry is the PATH",
        ),
        ("weights.nonesuch=none", r"weights\.nonesuch: "),
        (
            "zoo.small_cnn.optimizer=adamm",
            r"zoo\.small_cnn\.optimizer: unknown optimizer 'adamm'; known: adam, adamw, sgd \(did you mean 'adam'\?\)",
        ),
        (
            "zoo.vgg16.schedule=cosin",
            r"zoo\.vgg16\.schedule: unknown schedule 'cosin'; known: constant, cosine, one_cycle, multistep "
            r"\(did you mean 'cosine'\?\)",
        ),
        ("train.augment=mixup", r"train\.augment: unknown augmentation 'mixup'; known: none, crop_flip"),
        (
            "zoo.kd_resnet50.distill=dkdd",
            r"zoo\.kd_resnet50\.distill: unknown distillation method 'dkdd'; known: .*\bkd, ",
        ),
    ],
)
def test_names_are_resolved_against_the_registries(override, message):
    """config is a leaf and does not know the registries; study.resolve checks the names, with the
    same one-paragraph error (and the command line goes through it)."""
    load_config(None, [override])  # the schema alone accepts any name
    with pytest.raises(UserError, match=r"Invalid configuration \(defaults \+ --set .*\): " + message):
        load_study_config(None, [override])


def test_a_sweep_of_too_many_points_is_refused():
    axes = {f"zoo.small_cnn.{key}": list(range(1, 23)) for key in ("epochs", "batch_size", "patience")}
    with pytest.raises(UserError, match=r"sweep: axes: 10,648 grid points; a sweep has at most 10,000"):
        load_config(None, [f"sweep.axes={axes}"])


def _alias_bomb(levels: int = 9) -> str:
    """ "Billion laughs" in flow style: ``levels`` anchors of ten aliases each, 10^levels values."""
    items = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    items += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "{" + ", ".join(items) + "}"


@pytest.mark.parametrize(
    "text, problem",
    [
        (f"sweep: {{axes: {{kd.alpha: {_alias_bomb()}}}}}\n", "its aliases expand to more than 100,000 values"),
        ("train: " + "[" * 5000 + "]" * 5000 + "\n", "nests more than 64 levels deep"),
        ("train: &t [*t]\n", "refers to the collection that contains it"),
    ],
    ids=["alias bomb", "deep nesting", "self reference"],
)
def test_hostile_yaml_is_refused_in_a_file_and_on_the_command_line(tmp_path, text, problem):
    path = tmp_path / "hostile.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=re.escape(problem)):
        load_config(path)
    key, value = text.split(": ", 1)
    with pytest.raises(UserError, match=re.escape(problem)):
        load_config(None, [f"{key}={value.strip()}"])
