"""`curriculab dryrun`: the paper profile's tables on synthetic data, train + resume + report (issue 15 §4)."""

from __future__ import annotations

import pytest
from conftest import ROOT

PAPER = ROOT / "profiles" / "paper.yaml"


def test_dryrun_baseline_table(tmp_path, capsys, monkeypatch):
    """One paper table end to end: runs counted as expand_table does, parameters > 0, every stage reached,
    nothing written to the project's runs/ or reports/."""
    from curriculab.cli import main
    from curriculab.project import load_params
    from curriculab.tables.spec import expand_table, get_spec

    monkeypatch.chdir(ROOT)
    code = main(["dryrun", "--profile", "paper", "--tables", "baseline", "--keep", str(tmp_path / "dry")])
    out = capsys.readouterr().out
    assert code == 0, out
    runs = len(expand_table(get_spec("baseline"), load_params(PAPER)))
    row = next(line for line in out.splitlines() if line.startswith("| baseline |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == str(runs) and cells[2] == "2"  # 2 datasets × 3 seeds: 2 configurations
    assert "resnet18" in cells[3] and "11.17M" in cells[3]
    assert cells[9] == "train+resume+report" and cells[10] == "ok"
    assert "a guess, not a measurement" in out
    from curriculab.store import disk_bytes

    assert float(cells[8]) == round(disk_bytes(tmp_path / "dry" / "baseline") / 2**30, 1) > 0  # 2 ResNet-18s
    assert "GiB free)" in out.splitlines()[0]
    assert (tmp_path / "dry" / "baseline" / "reports" / "tables" / "baseline.md").is_file()
    recs = list((tmp_path / "dry" / "baseline" / "runs" / "baseline").glob("*/metrics.json"))
    assert len(recs) == runs


def test_dryrun_failure_is_reported(tmp_path, capsys, monkeypatch):
    """A table that cannot run is listed with its stage and error, and the command exits non-zero."""
    import curriculab.dryrun as dr
    from curriculab.cli import main

    def broken(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(dr, "_train_and_resume", broken)
    code = main(["dryrun", "--profile", "paper", "--tables", "baseline", "--keep", str(tmp_path / "dry")])
    captured = capsys.readouterr()
    assert code == 1
    assert "baseline: failed: train: RuntimeError: boom" in captured.out
    assert "dry run failed for 1 table(s): baseline" in captured.err


def test_dryrun_unknown_table_is_one_line(capsys, monkeypatch):
    from curriculab.cli import main

    monkeypatch.chdir(ROOT)
    assert main(["dryrun", "--profile", "paper", "--tables", "nosuch"]) == 2
    assert "unknown table" in capsys.readouterr().err


def _paper_raw():
    from curriculab.settings_file import load_yaml, resolve_uses

    return resolve_uses(load_yaml(PAPER))


def test_dry_raw_scales_the_blur_schedule():
    """ps_t1's switch schedule (every 4 epochs over 4 copies) is scaled to every epoch, and its rows train
    one epoch per copy and one on the original data."""
    from curriculab.config import Params
    from curriculab.methods import preflight
    from curriculab.synthetic import dry_raw
    from curriculab.tables.spec import expand_table, get_spec

    dry = dry_raw(_paper_raw(), "ps_t1", 8)
    rows = dry["tables"]["ps_t1"]["rows"]
    assert rows["progressive_sharpening"]["methods"]["progressive_sharpening"]["every"] == 1
    assert rows["progressive_sharpening"]["train"]["epochs"] == 5 and rows["baseline"]["train"]["epochs"] == 2
    for run in expand_table(get_spec("ps_t1"), Params.model_validate(dry)):
        preflight(run.config, None)


def test_dry_raw_device_switches():
    """`dryrun --device cuda` (bench/gpu_check.sh): every row and the pretrain stage on the device, with the
    bf16 / channels_last / compile switches as given; the CPU default turns them off."""
    from curriculab.synthetic import dry_raw

    raw = _paper_raw()
    gpu = dry_raw(raw, "spl_t1", 8, device="cuda", bf16=True, channels_last=True, compile=True)
    for row in gpu["tables"]["spl_t1"]["rows"].values():
        assert {k: row["train"][k] for k in ("device", "bf16", "channels_last", "compile")} == \
            {"device": "cuda", "bf16": True, "channels_last": True, "compile": True}
    assert gpu["pretrain"]["spl_advise"]["device"] == "cuda"
    cpu = dry_raw(raw, "baseline", 8)["tables"]["baseline"]["rows"]["baseline"]["train"]
    assert (cpu["device"], cpu["bf16"], cpu["channels_last"], cpu["compile"]) == ("cpu", False, False, False)


def test_dry_raw_caps_clusters():
    """SPL-ADVisE's clusters per class (embedding and pixel k-means) are capped at DRY_CLUSTERS, and
    cluster_need says how many training items per class the synthetic split must then hold."""
    from curriculab.synthetic import DRY_CLUSTERS, cluster_need, dry_raw

    raw = _paper_raw()
    dry = dry_raw(raw, "spl_t1", 8)
    rows = dry["tables"]["spl_t1"]["rows"]
    assert rows["SPLD"]["methods"]["spl_advise"]["k"] == DRY_CLUSTERS
    assert rows["SPL-ADVisE"]["methods"]["spl_advise"]["embedding"]["clusters"] == DRY_CLUSTERS
    assert dry["pretrain"]["spl_advise"]["embedding"]["clusters"] == DRY_CLUSTERS
    assert cluster_need(dry) == DRY_CLUSTERS
    assert cluster_need(dry_raw(raw, "baseline", 8)) == 0


def test_dry_raw_fits_the_cascades():
    """CSA trains one epoch per phase (K = 8, 4, 2, 1: 4); GCSA's gradual cascade (100 epochs in thesis
    Table 3.4) takes one epoch, then a clean one."""
    from curriculab.synthetic import dry_raw

    raw = _paper_raw()
    rows = dry_raw(raw, "thesis_t34", 8)["tables"]["thesis_t34"]["rows"]
    assert rows["csa_k8"]["train"]["epochs"] == 4 and rows["baseline"]["train"]["epochs"] == 2
    assert rows["gcsa_k8"]["methods"]["gcsa"]["cascade_epochs"] == 1 and rows["gcsa_k8"]["train"]["epochs"] == 2


def test_dry_raw_caps_perfect_orderings_start_networks():
    from curriculab.synthetic import DRY_START_NETWORKS, EVAL_BATCH, dry_raw

    runner = dry_raw(_paper_raw(), "thesis_t21", 8)["tables"]["thesis_t21"]["run"]["runner"]
    assert runner["clusters"] == DRY_START_NETWORKS and runner["eval_batch_size"] == EVAL_BATCH


def test_dry_raw_caps_poa_candidates_and_the_split_holds_them():
    from curriculab.config import Params
    from curriculab.synthetic import DRY_CANDIDATES, candidate_need, dry_raw
    from curriculab.tables.spec import expand_table, get_spec

    dry = dry_raw(_paper_raw(), "thesis_t22", 8)
    rows = dry["tables"]["thesis_t22"]["rows"]
    assert {row["methods"]["poa"]["k"] for row in rows.values() if "poa" in row.get("methods", {})} \
        == {DRY_CANDIDATES}
    runs = expand_table(get_spec("thesis_t22"), Params.model_validate(dry))
    assert candidate_need(runs) == DRY_CANDIDATES * 8  # K batches of 8


def test_dry_raw_caps_test_time_sums_and_attack_steps():
    from curriculab.synthetic import DRY_ATTACK_STEPS, DRY_TTSA_SUMS, dry_raw

    raw = _paper_raw()
    assert dry_raw(raw, "thesis_t36", 8)["evaluate"]["thesis_t36"]["ttsa"]["c"] == DRY_TTSA_SUMS
    adv = dry_raw(raw, "thesis_t33", 8)["evaluate"]["thesis_t33"]["adversarial"]
    assert adv["defences"]["ttsa"]["c"] == DRY_TTSA_SUMS and adv["eot_samples"] == DRY_TTSA_SUMS
    paper = raw["evaluate"]["thesis_t33"]["adversarial"]["attacks"]  # each setting spelt out, 10 steps
    assert {a["steps"] for n, a in paper.items() if n != "fgsm"} == {10}
    assert adv["attacks"] == {"fgsm": paper["fgsm"],  # only the iterative attacks' steps change
                              **{n: {**paper[n], "steps": DRY_ATTACK_STEPS} for n in ("bim", "mim", "pgd")}}


def test_dry_raw_caps_the_default_attacks_too():
    """An adversarial block that names no attacks gets AdversarialParams' defaults (FGSM and a 10-step PGD):
    the dry run caps that PGD as it caps a named one."""
    from curriculab.synthetic import DRY_ATTACK_STEPS, dry_raw

    raw = _paper_raw()
    del raw["evaluate"]["thesis_t33"]["adversarial"]["attacks"]
    adv = dry_raw(raw, "thesis_t33", 8)["evaluate"]["thesis_t33"]["adversarial"]
    assert adv["attacks"] == {"fgsm": {}, "pgd": {"steps": DRY_ATTACK_STEPS}}


def test_dry_raw_caps_vae_importance_samples():
    """cbs_t6's test NLL takes 500 importance samples per image; the dry run takes DRY_NLL_SAMPLES."""
    from curriculab.synthetic import DRY_NLL_SAMPLES, dry_raw

    raw = _paper_raw()
    assert raw["tables"]["cbs_t6"]["run"]["task_params"]["nll_samples"] > DRY_NLL_SAMPLES
    dry = dry_raw(raw, "cbs_t6", 8)["tables"]["cbs_t6"]
    assert dry["run"]["task_params"]["nll_samples"] == DRY_NLL_SAMPLES
    assert all(row.get("task_params", {}).get("nll_samples", DRY_NLL_SAMPLES) == DRY_NLL_SAMPLES
               for row in dry["rows"].values())


def test_config_key_merges_same_shape_runs():
    """Runs differing only in seed, learning rate or a same-shape dataset train through one code path:
    one configuration. Another model or another image shape is another."""
    from curriculab.config import RunConfig
    from curriculab.project import load_params
    from curriculab.synthetic import config_key

    real = load_params(PAPER)
    base = {"data": {"dataset": "cifar10"}, "model": {"name": "resnet18"}}
    key = config_key(RunConfig.model_validate(base), real)
    same = {"seed": 3, "data": {"dataset": "svhn"}, "model": {"name": "resnet18"},
            "train": {"optimizer": {"lr": 0.5}}}
    assert config_key(RunConfig.model_validate(same), real) == key
    for other in ({**base, "data": {"dataset": "cifar100"}}, {**base, "data": {"dataset": "mnist"}},
                  {**base, "model": {"name": "vgg16"}}, {**base, "methods": {"mixup": {}}}):
        assert config_key(RunConfig.model_validate(other), real) != key


@pytest.mark.slow
def test_dryrun_paper_profile(capsys, monkeypatch):
    """Every table of the paper profile (slow: 48 min on the quiet 2-core machine, 2026-12-07; .ci/run runs it).
    A table past the time cap is 'skipped', which fails the command as a failed table does. The cap leaves
    room for a slower machine, and keeps .ci/run (about 8 min besides this test) under its 90 minutes."""
    from curriculab.cli import main
    from curriculab.project import load_params

    monkeypatch.chdir(ROOT)
    tables = len(load_params(ROOT / "profiles" / "paper.yaml").tables)
    code = main(["dryrun", "--profile", "paper", "--time-budget", "4500"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"all {tables} table(s) passed train + resume + evaluate (where defined) + report" in out


def test_disk_bytes_counts_a_hard_linked_file_once(tmp_path):
    """A dry copy of a run is hard links to the trained one: the table's disk use counts its files once."""
    import os

    from curriculab.store import disk_bytes

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "checkpoint.pt").write_bytes(b"x" * 1000)
    (tmp_path / "a" / "metrics.json").write_bytes(b"y" * 10)
    (tmp_path / "b").mkdir()
    os.link(tmp_path / "a" / "checkpoint.pt", tmp_path / "b" / "checkpoint.pt")
    (tmp_path / "b" / "metrics.json").write_bytes(b"z" * 7)
    (tmp_path / "c").symlink_to(tmp_path / "a")  # a link is not counted as the files it points to
    assert disk_bytes(tmp_path) == 1000 + 10 + 7


def test_same_epoch_record_treats_nan_as_equal():
    """A metric that is NaN on the tiny dry data (dp_rand: no clean items, so their σ mean is NaN) is the same
    after a resume; any other difference is not."""
    from curriculab.dryrun import same_epoch

    nan = float("nan")
    assert same_epoch({"a": 1.0, "b": nan}, {"a": 1.0, "b": nan})
    assert not same_epoch({"a": 1.0, "b": nan}, {"a": 2.0, "b": nan})


def test_a_dataset_prepare_would_stream_is_written_as_image_files_in_its_real_layout(tmp_path):
    """ImageNet and WebVision at their real sizes are streamed: the dry run writes JPEGs in each one's layout
    (class folders; WebVision's file lists) and prepares them by the real source, as files, with all 1,000 classes."""
    from curriculab.config import Params
    from curriculab.data.prepared import read_meta
    from curriculab.synthetic import streams, write_synthetic

    small = {"image_size": 16, "load_size": 20, "files_above_gib": 0.001}
    params = Params.model_validate({"prepare": {"datasets": ["digits", "imagefolder", "webvision"],
                                                "imagefolder": small, "webvision": small}})
    assert [streams(n, params) for n in params.prepare.datasets] == [False, True, True]
    write_synthetic(params, tmp_path, {"imagefolder": (6, 2, 3), "webvision": (6, 2, 3)})
    for name in ("imagefolder", "webvision"):
        meta = read_meta(tmp_path / "data", name)
        assert meta["layout"] == "files" and meta["classes"] == 1000 and meta["sizes"]["test"] == 3
        assert meta["stream"]["load_size"] == 20 and meta["shape"] == [3, 16, 16]
    assert (tmp_path / "webvision_files" / "info" / "val_filelist.txt").read_text().count(".jpg") == 3
    assert read_meta(tmp_path / "data", "digits").get("layout") is None


def test_each_image_dataset_takes_its_own_side_in_the_paper_profile():
    """ImageNet and WebVision at 224 px, CelebA at its 64 px (CBS Table 6): CelebA once took the image folder's
    side and would have been prepared at 224 px."""
    from curriculab.project import load_params
    from curriculab.synthetic import real_shape

    paper = load_params(PAPER)
    assert [real_shape(n, paper).size for n in ("imagefolder", "webvision", "celeba")] == [224, 224, 64]
    assert paper.prepare.celeba.image_size == 64
