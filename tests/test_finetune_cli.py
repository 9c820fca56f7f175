"""``audiossl-finetune`` then ``audiossl-evaluate`` end to end on a tiny tone corpus (real FLAC files).

Each letter is a tone, each word a run of tones, so labels and alignments are exact. The test checks the
contract users rely on: a checkpoint comes out, the report's WER numbers are what an independent
recomputation (greedy decoding of the saved model, jiwer on the raw strings) gives.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jiwer
import pytest
import soundfile
import torch

from _tone_corpus import TINY_ENCODER, run_cli, write_tone_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tone_corpus(tmp_path_factory.mktemp("tones"))


@pytest.fixture(scope="module")
def finetuned(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("run") / "asr"
    done = run_cli("finetune", "task=asr", "init=random", f"run_dir={run_dir}", f"data.manifest_dir={corpus}",
                   "trainer.max_steps=12", "trainer.validate_every=6", "trainer.save_every=6", "trainer.log_every=3",
                   "trainer.progress=false", "task.freeze_context_updates=6", "optim.lr=5e-3",
                   "data.max_batch_samples=64000", "data.max_sample_size=64000", *TINY_ENCODER)
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir


def test_finetune_writes_checkpoints_config_and_dev_wer(finetuned: Path) -> None:
    assert (finetuned / "checkpoints" / "best.pt").is_file()
    checkpoint = torch.load(finetuned / "checkpoints" / "best.pt", map_location="cpu", weights_only=True)
    assert checkpoint["config"]["downstream"]["upstream"]["kind"] == "encoder"
    assert checkpoint["config"]["encoder"]["model_dim"] == 32  # load_encoder can start from it
    records = [json.loads(line) for line in (finetuned / "metrics.jsonl").read_text().splitlines()]
    valid = [r for r in records if r.get("split") == "valid"]
    assert [r["step"] for r in valid] == [6, 12] and all("wer" in r["metrics"] for r in valid)
    # The context network thawed at update 6: the schedule is logged and saved in the model state.
    assert int(checkpoint["model"]["updates"]) in (6, 12)


def test_evaluate_report_numbers_match_a_recomputation(finetuned: Path, corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    done = run_cli("evaluate", f"runs=[{finetuned},{finetuned}]", "names=[first,second]", "decoders=[greedy,lm]",
                   f"out_dir={out}", "lm.text_split=train_10min", "lm.order=2", "lm.beam_size=8")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "report.md").is_file() and "report:" in done.stdout
    report = json.loads((out / "report.json").read_text())
    cells = {(r["system"], r["split"], r["decoder"]): r for r in report["results"]}
    assert set(cells) == {(s, split, d) for s in ("first", "second") for split in ("test_clean", "test_other")
                          for d in ("greedy", "lm")}
    results = json.loads((out / "results.json").read_text())
    greedy_clean = next(r for r in results if (r["system"], r["split"], r["decoder"]) == ("first", "test_clean", "greedy"))
    refs = [u["reference"] for u in greedy_clean["utterances"]]
    hyps = [u["hypothesis"] for u in greedy_clean["utterances"]]
    assert cells["first", "test_clean", "greedy"]["metrics"]["wer"] == pytest.approx(jiwer.wer(refs, hyps))
    by_id = {u["id"]: u["hypothesis"] for u in greedy_clean["utterances"]}  # the pipeline batches by length
    assert by_id == greedy_hypotheses(finetuned, corpus, "test_clean")
    assert cells["first", "test_clean", "greedy"]["metrics"] == cells["second", "test_clean", "greedy"]["metrics"]
    assert any(p.endswith(".png") for p in report["plots"]["per_speaker"].values() if p)
    assert any("LM weights tuned: lm_weight" in note and "dev_clean" in note for note in report["notes"])


def test_lm_tuning_picks_the_grid_point_with_the_lowest_dev_wer(finetuned: Path, tmp_path: Path) -> None:
    """The tuned weights are the grid's best on the run's dev split, and decoding dev again with them, through
    a decoder built apart from the sweep, gives the WER the sweep recorded."""
    from dataclasses import replace

    from audiossl.cli.evaluate import EvaluateConfig, LMConfig, load_run, lm_decoder, split_data, tune_lm
    from audiossl.data.pipeline import AudioPipeline
    from audiossl.metrics import wer_cer
    from audiossl.downstream.predict import predict_all

    lm = LMConfig(text_split="train_10min", order=2, beam_size=8, tune_lm_weights=[0.0, 3.0],
                  tune_word_scores=[-3.0, 1.0])
    cfg = EvaluateConfig(checkpoint=str(finetuned), out_dir=str(tmp_path), lm=lm)
    run = load_run("tuned", str(finetuned))
    tuning = tune_lm(run, cfg)
    assert {(p.lm_weight, p.word_score) for p in tuning.points} == {(0.0, -3.0), (0.0, 1.0), (3.0, -3.0), (3.0, 1.0)}
    assert all((tuning.best.wer, tuning.best.cer) <= (p.wer, p.cer) for p in tuning.points)
    chosen = replace(lm.settings(), lm_weight=tuning.best.lm_weight, word_score=tuning.best.word_score)
    dev = AudioPipeline(split_data(run, Path(run.saved.data.manifest_dir), "dev_clean", cfg), "dev_clean", train=False)
    again = predict_all(run.task, dev, {"lm": lm_decoder(run, cfg, chosen)})["lm"]
    assert wer_cer([p.reference for p in again], [p.hypothesis for p in again])["wer"] == pytest.approx(tuning.best.wer)


def test_an_empty_lm_tuning_grid_names_the_key(finetuned: Path) -> None:
    from audiossl.cli.evaluate import EvaluateConfig, LMConfig
    from audiossl.config import ConfigError

    cfg = EvaluateConfig(checkpoint=str(finetuned), lm=LMConfig(tune_word_scores=[]))
    with pytest.raises(ConfigError, match="lm.tune_word_scores"):
        cfg.validate()
    cfg.lm.tune_split = None  # no tuning: the grid is not used
    assert cfg.validate().systems() == [(finetuned.name, str(finetuned))]


def greedy_hypotheses(run_dir: Path, manifests: Path, split: str) -> dict[str, str]:
    """Decode ``split`` again, independently of the CLI: load the model, read each file, argmax, collapse."""
    from audiossl.downstream.finetuned import load_finetuned

    task, _, _ = load_finetuned(run_dir)
    lines = (manifests / f"{split}.tsv").read_text().splitlines()
    hypotheses = {}
    for line in lines[1:]:
        wave, _ = soundfile.read(Path(lines[0]) / line.split("\t")[0], dtype="float32")
        with torch.no_grad():
            output = task.encoder(torch.from_numpy(wave)[None], torch.tensor([wave.size]))
            best = task.head(output.features, output.lengths).argmax(-1)[0].tolist()
        collapsed = [b for i, b in enumerate(best) if b != 0 and (i == 0 or best[i - 1] != b)]
        text = "".join(" " if task.vocab.symbols[b] == "|" else task.vocab.symbols[b] for b in collapsed)
        hypotheses[line.split("\t")[0]] = " ".join(text.split())
    return hypotheses


def test_bad_init_names_the_key(corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture) -> None:
    from audiossl.cli.finetune import main

    monkeypatch.setattr(sys, "argv", ["audiossl-finetune", "init=does/not/exist.pt", f"run_dir={tmp_path / 'x'}",
                                      f"data.manifest_dir={corpus}"])
    with pytest.raises(SystemExit) as stopped:
        main()
    assert stopped.value.code == 2
    assert "'init'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # nothing was started


def test_the_command_line_reaches_fuse(corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture) -> None:
    """``fuse`` is read from the command line (it was once dropped between hydra and the dataclass)."""
    from audiossl.cli.finetune import main

    monkeypatch.setattr(sys, "argv", ["audiossl-finetune", "init=fbank", "fuse=mfcc", "task.mode=weighted",
                                      f"run_dir={tmp_path / 'x'}", f"data.manifest_dir={corpus}"])
    with pytest.raises(SystemExit) as stopped:
        main()
    assert stopped.value.code == 2
    assert "'fuse': init=fbank is a front-end already" in capsys.readouterr().err


def test_evaluate_a_new_test_set_and_an_lm_with_unspellable_words(finetuned: Path, corpus: Path,
                                                                    tmp_path: Path) -> None:
    """A manifest dir holding only a test split works (the LM text comes from the run's own training
    manifests), and a user ARPA with words the model cannot spell loses those words, not the run."""
    import shutil

    from audiossl.asr.lm import build_arpa

    new_set = tmp_path / "new_set"
    new_set.mkdir()
    for path in corpus.glob("test_clean.*"):
        shutil.copy(path, new_set / path.name.replace("test_clean", "my_test"))
    done = run_cli("evaluate", f"checkpoint={finetuned}", f"manifest_dir={new_set}", "splits=[my_test]",
                   "decoders=[greedy,lm]", f"out_dir={tmp_path / 'a'}", "lm.order=2", "lm.beam_size=8")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "my_test" in done.stdout and "of train_10min" in done.stdout  # the run's own training text

    build_arpa(["HELLO BALL", "ZÜRICH HELLO", "HA ABLE"], tmp_path / "user.arpa", 2)
    done = run_cli("evaluate", f"checkpoint={finetuned}", "splits=[test_clean]", "decoders=[lm]",
                   f"out_dir={tmp_path / 'b'}", f"lm.arpa={tmp_path / 'user.arpa'}", "lm.beam_size=8")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "left out 1 of" in done.stdout + done.stderr and "ZÜRICH" in done.stdout + done.stderr


def test_pseudolabel_writes_a_self_training_split_that_finetunes(finetuned: Path, corpus: Path,
                                                                 tmp_path: Path) -> None:
    """The run's real labels come first, unchanged; each unlabeled file gets the LM beam's transcript of that
    same file (the one evaluate writes with the same settings) or, when that is empty, is left out; the
    reported pseudo-label WER is jiwer's on them, and the split trains. An LM built from the unlabeled audio's
    own transcripts is refused. (The 12-update model is weak: a word bonus makes its beam emit words.)"""
    lm = ["lm.text_split=train_10min", "lm.order=2", "lm.beam_size=8", "lm.tune_split=null", "lm.lm_weight=0.0",
          "lm.word_score=4.0"]
    refused = run_cli("pseudolabel", f"run={finetuned}", "unlabeled=test_clean", "out_split=st",
                      f"out_dir={tmp_path}", "lm.text_split=test_clean")
    assert refused.returncode == 2 and "'lm.text_split'" in refused.stderr and "test_clean" in refused.stderr
    done = run_cli("pseudolabel", f"run={finetuned}", "unlabeled=test_clean", "out_split=st",
                   f"out_dir={tmp_path / 'pl'}", *lm)
    assert done.returncode == 0, done.stderr[-3000:]
    same = run_cli("evaluate", f"checkpoint={finetuned}", "splits=[test_clean]", "decoders=[lm]",
                   f"out_dir={tmp_path / 'eval'}", *lm)
    assert same.returncode == 0, same.stderr[-3000:]
    beam = {u["id"]: u["hypothesis"] for u in json.loads((tmp_path / "eval" / "results.json").read_text())[0]["utterances"]}
    labeled = (corpus / "train_10min.tsv").read_text().splitlines()
    unlabeled = (corpus / "test_clean.tsv").read_text().splitlines()[1:]
    kept = [line for line in unlabeled if beam[line.split("\t")[0]]]
    assert kept, "the word bonus should make the beam emit words"
    assert (corpus / "st.tsv").read_text().splitlines() == labeled + kept
    letters = (corpus / "st.ltr").read_text().splitlines()
    assert letters[:len(labeled) - 1] == (corpus / "train_10min.ltr").read_text().splitlines()
    pseudo = (corpus / "st.wrd").read_text().splitlines()[len(labeled) - 1:]
    assert pseudo == [beam[line.split("\t")[0]] for line in kept]
    summary = json.loads((tmp_path / "pl" / "summary.json").read_text())
    assert (summary["labeled"], summary["pseudo_labeled"]) == (len(labeled) - 1, len(kept))
    assert summary["left_out"] == len(unlabeled) - len(kept)
    truth = (corpus / "test_clean.wrd").read_text().splitlines()
    assert summary["pseudo_label_error"]["wer"] == pytest.approx(
        jiwer.wer(truth, [beam[line.split("\t")[0]] for line in unlabeled]))
    trained = run_cli("finetune", "task=asr", "init=random", f"run_dir={tmp_path / 'st_run'}",
                      f"data.manifest_dir={corpus}", "data.train_split=st", "trainer.max_steps=2",
                      "trainer.validate_every=2", "trainer.progress=false", "data.max_batch_samples=64000",
                      "data.max_sample_size=64000", *TINY_ENCODER)
    assert trained.returncode == 0, trained.stderr[-3000:]


def test_the_unlabeled_pool_leaves_out_labeled_and_excluded_audio(tmp_path: Path) -> None:
    """Files are compared whatever the manifests' root lines, and the written split re-expresses unlabeled
    paths against the labeled root."""
    from audiossl.data.manifest import Manifest, ManifestRow
    from audiossl.downstream.pseudo_label import unlabeled_pool, write_self_training_split

    rows = [ManifestRow(f"a/{i}.flac", 16000 + i) for i in range(5)]
    everything = Manifest(Path("/data"), rows, {"wrd": [f"WORD {i}" for i in range(5)]})
    labeled = Manifest(Path("/data"), [rows[1]], {"ltr": ["W O R D |"]})
    lm_text = Manifest(Path("/data/a"), [ManifestRow("3.flac", 16003), ManifestRow("4.flac", 16004)])
    pool = unlabeled_pool(everything, [labeled, lm_text])
    assert pool.rows == [rows[0], rows[2]] and pool.labels == {"wrd": ["WORD 0", "WORD 2"]}
    elsewhere = Manifest(Path("/data/a"), [ManifestRow("0.flac", 16000), ManifestRow("2.flac", 16002)])
    written = write_self_training_split(tmp_path, "st", labeled, elsewhere, {"0.flac": "ZERO", "2.flac": ""})
    assert (written.labeled, written.pseudo_labeled, written.left_out) == (1, 1, 1)
    assert (tmp_path / "st.tsv").read_text().splitlines() == ["/data", "a/1.flac\t16001", "a/0.flac\t16000"]
    assert (tmp_path / "st.ltr").read_text().splitlines() == ["W O R D |", "Z E R O |"]


def test_report_names_the_lm_text_it_was_built_from() -> None:
    from audiossl.cli.evaluate import LMConfig

    assert LMConfig().source() == "3-gram built from train_clean transcripts"
    assert LMConfig(text="runs/lm_text.txt", order=4).source() == "4-gram built from runs/lm_text.txt"
    assert LMConfig(arpa="4-gram.arpa", text="ignored.txt").source() == "4-gram.arpa"
