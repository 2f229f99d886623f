"""`python -m vit_jax.infer`: text and JSON output, attention maps, and one-line user errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from vit_jax import infer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(capsys, *argv):
    code = infer.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_text_output(capsys, token_ckpt, image_dir):
    code, out, err = run(capsys, "--checkpoint", token_ckpt, "--image", image_dir / "rgb.png")
    assert code == 0, err
    lines = out.splitlines()
    assert "10 classes, 16x16 input, softmax, labels: indices" in lines[0]
    assert lines[1] == str(image_dir / "rgb.png")
    assert [line.split(".")[0].strip() for line in lines[2:]] == ["1", "2", "3", "4", "5"]


def test_json_schema_order_and_sum(capsys, token_ckpt, image_dir):
    images = [image_dir / "rgb.png", image_dir / "gray16.png"]
    code, out, err = run(
        capsys, "--checkpoint", token_ckpt, "--image", *images, "--top_k", "10", "--json"
    )
    assert code == 0, err
    rows = json.loads(out)
    assert isinstance(rows, list) and len(rows) == 20
    for image in images:
        mine = [r for r in rows if r["image"] == str(image)]
        assert all(set(r) == {"image", "index", "label", "prob"} for r in mine)
        assert all(isinstance(r["index"], int) and r["label"] == str(r["index"]) for r in mine)
        probs = [r["prob"] for r in mine]
        assert probs == sorted(probs, reverse=True) and abs(sum(probs) - 1.0) < 1e-5


def test_label_file_and_multi_label_flag(capsys, token_ckpt, image_dir, tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("".join(f"class_{i}\n" for i in range(10)))
    code, out, err = run(
        capsys,
        "--checkpoint",
        token_ckpt,
        "--image",
        image_dir / "rgb.png",
        "--labels",
        names,
        "--multi_label",
        "--json",
        "--top_k",
        "10",
    )
    assert code == 0, err
    rows = json.loads(out)
    assert all(r["label"] == f"class_{r['index']}" for r in rows)
    assert sum(r["prob"] for r in rows) > 1.5  # Ten sigmoids near 0.5, not a softmax.


def test_attention_map(capsys, token_ckpt, image_dir, tmp_path):
    out_png = tmp_path / "maps" / "rollout.png"
    code, _, err = run(
        capsys,
        "--checkpoint",
        token_ckpt,
        "--image",
        image_dir / "rgb.png",
        image_dir / "photo.jpg",
        "--attention_map",
        out_png,
    )
    assert code == 0, err
    assert f"wrote {out_png}" in err
    with Image.open(out_png) as png:
        width, height = png.size
    assert width > 400 and height > 2 * 300  # Two rows: input and overlay.


def _bad_image(tmp_path, image_dir):
    (tmp_path / "notes.txt").write_text("not an image")
    data = (image_dir / "rgb.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    return {
        tmp_path / "notes.txt": "not an image file",
        tmp_path / "cut.png": "corrupt or truncated",
        tmp_path / "absent.png": "does not exist",
    }


def test_user_errors_are_one_message(capsys, token_ckpt, image_dir, tmp_path):
    good = image_dir / "rgb.png"
    short = tmp_path / "short.txt"
    short.write_text("a\nb\nc\n")
    not_npz = tmp_path / "model.npz"
    not_npz.write_text("<html>denied</html>")
    cases = [
        *(
            ([token_ckpt, bad], [str(bad), why])
            for bad, why in _bad_image(tmp_path, image_dir).items()
        ),
        ([token_ckpt, good, "--labels", short], [str(short), "3 names", "10 classes"]),
        ([token_ckpt, good, "--labels", "imagenet2012"], ["1000 names", "10 classes"]),
        ([token_ckpt, good, "--top_k", "0"], ["--top_k must be at least 1"]),
        ([token_ckpt, good, "--batch_size", "0"], ["batch_size must be at least 1"]),
        ([tmp_path / "absent.npz", good], [str(tmp_path / "absent.npz"), "does not exist"]),
        ([not_npz, good], [str(not_npz), "not a checkpoint"]),
    ]
    for (ckpt, image, *flags), expected in cases:
        code, out, err = run(capsys, "--checkpoint", ckpt, "--image", image, *flags)
        assert code == 2, (expected, out, err)
        assert err.startswith("Error: ") and "Traceback" not in err and not out
        assert len(err.strip().splitlines()) == 1, err
        for text in expected:
            assert text in err, (text, err)


def test_arguments(capsys, token_ckpt):
    base = ["--checkpoint", token_ckpt, "--image", "x.png"]
    assert infer.parse_args(base).multi_label is None  # Decided by the head's class count.
    assert infer.parse_args([*base, "--multi_label"]).multi_label is True
    assert infer.parse_args([*base, "--no_multi_label"]).multi_label is False
    with pytest.raises(SystemExit) as info:
        infer.main(["--checkpoint", token_ckpt])  # No --image.
    assert info.value.code == 2
    assert "--image" in capsys.readouterr().err


def test_subprocess(token_ckpt, image_dir):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "vit_jax.infer",
            "--checkpoint",
            token_ckpt,
            "--image",
            str(image_dir / "gray.png"),
            "--json",
            "--top_k",
            "2",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [set(r) for r in rows] == [{"image", "index", "label", "prob"}] * 2
    assert rows[0]["prob"] >= rows[1]["prob"] and rows[0]["image"] == str(image_dir / "gray.png")
