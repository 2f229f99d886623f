"""`python -m vit_jax.figures`: Figure 7's three PNGs for ViT, GAP and hybrid checkpoints."""

from __future__ import annotations

from PIL import Image

from vit_jax import checkpoint, figures


def _png_sizes(out_dir):
    sizes = {}
    for key, name in figures.FILENAMES.items():
        path = out_dir / name
        assert path.stat().st_size > 5_000, path  # Real plots, not empty canvases.
        with Image.open(path) as png:
            assert png.format == "PNG"
            sizes[key] = png.size
    return sizes


def test_cli_writes_three_readable_pngs(capsys, token_ckpt, image_dir, tmp_path):
    code = figures.main([token_ckpt, str(tmp_path), "--images", str(image_dir / "rgb.png")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.splitlines() == [f"wrote {tmp_path / n}" for n in figures.FILENAMES.values()]
    sizes = _png_sizes(tmp_path)
    width, height = sizes["embedding_filters"]
    assert width > 600 and height > 400  # 4 rows of 7 components at 100 dpi.
    width, height = sizes["position_embeddings"]
    assert width > 500 and height > 450
    width, height = sizes["attention_distance"]
    assert width > 500 and height > 350


def test_hybrid_and_gap_models(hybrid_ckpt, gap_ckpt, tmp_path):
    assert figures.main([hybrid_ckpt, str(tmp_path / "hybrid"), "--num_random", "2"]) == 0
    _png_sizes(tmp_path / "hybrid")  # The embedding panel says why it does not apply.
    panels = figures.figure7(checkpoint.load(gap_ckpt), num_random=1)
    assert set(panels) == set(figures.FILENAMES)


def test_bad_checkpoint_is_one_message(capsys, tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"\x80\x04junk")
    assert figures.main([str(bad), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and str(bad) in err and "Traceback" not in err
