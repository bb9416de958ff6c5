"""The table of portable networks (dpi_jax.networks) and the registry of metrics (dpi_jax.evaluate.registry): every
network has the whole interface and its checkpoints round-trip, the port command offers exactly the table, every
metric's columns reach the row, and a new metric is one registry record."""

import functools
from types import SimpleNamespace

import jax
import numpy as np
import pytest

from dpi_jax import port
from dpi_jax.evaluate import measures, registry
from dpi_jax.networks import NETWORKS, PortableNetwork

# The networks whose zeros round-trip here in about a second (under 6M parameters; named, not measured at collection:
# working out every network's shapes takes seconds). The others share the same save/load code per kind.
SMALL_NETWORKS = ("crt_256", "lpips_alex")


@functools.cache
def _abstract(name: str):
    return NETWORKS[name].abstract_params()


def _size(tree) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


@pytest.mark.parametrize("name", NETWORKS)
def test_every_network_has_the_interface(name, tmp_path):
    network = NETWORKS[name]
    assert isinstance(network, PortableNetwork) and network.name == name
    assert network.kind and network.weights_file and network.default_dir and network.description
    for field in ("abstract_params", "convert", "save", "load", "missing_message"):
        assert callable(getattr(network, field)), field
    message = network.missing_message(tmp_path / "nowhere")
    assert f"python -m dpi_jax.port {network.weights_file} {tmp_path / 'nowhere'} --model {name}" in message
    with pytest.raises(FileNotFoundError) as err:
        network.load(tmp_path / "nowhere")
    assert str(err.value) == message
    assert _size(_abstract(name)) > 0


@pytest.mark.parametrize("name", SMALL_NETWORKS)
def test_small_networks_round_trip_through_save_and_load(name, tmp_path):
    network = NETWORKS[name]
    assert _size(_abstract(name)) < 6_000_000
    params = jax.tree.map(lambda spec: np.zeros(spec.shape, spec.dtype), _abstract(name))
    out = network.save(tmp_path / name, params, overwrite=False)
    loaded = network.load(out)
    assert jax.tree.structure(loaded) == jax.tree.structure(params)
    assert jax.tree.all(jax.tree.map(lambda a, b: a.shape == b.shape and not np.any(a), loaded, params))


def test_port_offers_the_table(capsys):
    assert port.main(["--help"]) == 0
    help_text = capsys.readouterr().out
    assert all(name in help_text for name in NETWORKS)
    for name, network in NETWORKS.items():
        assert port._network(SimpleNamespace(model=name, kind=None)) is network


def test_port_refuses_an_option_the_network_does_not_take(tmp_path, capsys):
    assert port.main(["x.pth", str(tmp_path / "out"), "--model", "musiq", "--heads", "h.pth"]) == 2
    assert "--heads applies to lpips_alex and lpips_vgg, not to the metric network musiq" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_every_metric_reaches_the_columns_and_its_defaults_the_network_table():
    everything = measures.columns(measures.CHOICES)
    for metric in registry.METRICS.values():
        assert metric.columns and set(metric.columns) <= set(everything)
        assert set(metric.labels) == set(metric.digits) == set(metric.columns)
        assert (metric.per_image is not None) == bool(metric.image_columns)
        assert (metric.per_set is not None) == bool(metric.set_columns)
        assert (metric.network is None) == (metric.weights is None)
        if metric.network:
            assert measures.weight_folders()[metric.weights] == NETWORKS[metric.network].default_dir
    assert everything == ("psnr", "ssim", "lpips", "fid", "is", "musiq", "clipiqa", "id_acc", "id_cs", "lr_psnr",
                          "diversity")


def test_a_new_metric_is_one_registry_record(monkeypatch):
    """A toy metric (the mean brightness per image, and its largest value per set) flows through parse_metrics,
    columns and the Accumulator into the row, with nothing but its record."""
    toy = registry.Metric(
        "brightness", {"brightest": "brightest", "brightness": "brightness"}, {"brightest": 1, "brightness": 1},
        needs_ground_truth=False, image_columns=("brightness",), set_columns=("brightest",), kept=("means",),
        per_image=lambda networks, batch: {"brightness": batch.per_seed(batch.flat.mean(axis=(1, 2, 3))),
                                           "means": batch.per_seed(batch.flat.mean(axis=(1, 2, 3)))},
        per_set=lambda networks, values: {"brightest": float(values.kept["means"].max()), "brightest_std": None})
    monkeypatch.setitem(registry.METRICS, toy.name, toy)
    metrics = measures.parse_metrics("brightness,psnr")
    assert metrics == ("psnr", "brightness")
    assert measures.columns(metrics) == ("psnr", "brightest", "brightness")
    acc = measures.Accumulator(metrics, measures.MetricNetworks(), scale=2)
    sr = np.stack([np.full((2, 4, 4, 3), v, np.uint8) for v in (10, 30)])  # 2 seeds, 2 inputs
    acc.add(sr, np.zeros((2, 2, 2, 3), np.uint8), np.full((2, 4, 4, 3), 20, np.uint8))
    row = acc.summary(["a", "b"])
    assert row["brightness"] == 20.0 and row["brightness_std"] == 0.0
    assert row["brightest"] == 30.0 and row["brightest_std"] is None
    assert row["per_image"]["a"] == {"psnr": pytest.approx(row["psnr"]), "brightness": 20.0}
