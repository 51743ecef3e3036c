

# ---------------------------------------------------------------- one pivot-layer rule


def test_pivot_layer_lies_below_the_top_block_everywhere(tiny_model_dir, tmp_path, capsys):
    """n = N is refused by training's resolver, the lens decision, the sweep and `pivotune probe` alike."""
    import numpy as np

    from pivotune.analysis.logit_lens import LensResult, regulation_decision, suggest_pivot_layer
    from pivotune.models.pivot_head import default_pivot_layer, pivot_layers, resolve_pivot_layer
    from pivotune.toy.sweep import expand_grid

    assert list(pivot_layers(4)) == [1, 2, 3] and default_pivot_layer(2) == 1 and default_pivot_layer(32) == 24
    for refuse in (lambda: resolve_pivot_layer(4, 4), lambda: resolve_pivot_layer(None, 1),
                   lambda: regulation_decision(LensResult(np.full((1, 5), 0.1), np.full((1, 5), 0.2), 4), 4),
                   lambda: expand_grid(4, [4], [0.1], [0.5])):
        with pytest.raises(PivotuneError, match="below the top|at least 2"):
            refuse()
    assert suggest_pivot_layer(LensResult(np.full((1, 5), 0.2), np.zeros((1, 5)), 4)).candidates == [3]
    pairs = tmp_path / "el.tsv"
    pairs.write_text("".join(f"{e}\t{t}\n" for e, t in [("cat", "gata"), ("dog", "skylos"), ("tree", "dentro"),
                                                          ("house", "spiti"), ("water", "nero"), ("red", "kokkino")]))
    err = _cli_error(capsys, ["probe", str(tiny_model_dir), "--pairs", f"el={pairs}", "--pivot-layer", "2",
                              "--out", str(tmp_path / "out")])
    assert "--pivot-layer=2" in err and "1 <= n <= 1" in err and not (tmp_path / "out").exists()
