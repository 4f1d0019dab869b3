"""The one pretrained-weights convention: save / load / list / card, for every learned method, and its defects."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from krylearn.solvers.dcdm import DCDMNet, load_model
from krylearn.solvers.dds import UNet, load_prior
from krylearn.solvers.learned import (Pretrained, available, find_weights, load_pretrained, load_weights,
                                      save_pretrained, save_weights)
from krylearn.solvers.learned.weights import sha256_file, weight_files
from krylearn.solvers.lsm import LSM2d, NormalizedOperator, UnitGaussianNormalizer
from krylearn.utils.errors import FormatError


def _tiny(method):
    torch.manual_seed(0)
    if method == "dcdm":
        return DCDMNet(2, width=2, levels=1)
    if method == "dds":
        return UNet(in_channels=1, base_channels=8, channel_mult=(1, 2))
    x = torch.rand(4, 1, 8, 8)
    return NormalizedOperator(LSM2d(width=8, num_basis=2, num_token=2, levels=2), UnitGaussianNormalizer.fit(x),
                              UnitGaussianNormalizer.fit(x))


@pytest.mark.parametrize("method", ["dcdm", "lsm", "dds"])
def test_every_method_saves_and_loads_one_shape(method, tmp_path):
    net = _tiny(method)
    wpath, cpath = save_pretrained(net, {"data": "none (test)"}, tmp_path / "m")
    card = json.loads(cpath.read_text())
    assert card["method"] == method and card["config"] == net.config and card["sha256"] == sha256_file(wpath)
    loaded = load_pretrained(tmp_path / "m")
    assert isinstance(loaded, Pretrained) and type(loaded.net) is type(net) and loaded.card == card
    got, _ = loaded  # unpacks as (net, card)
    assert not got.training and not any(p.requires_grad for p in got.parameters())
    ref = net.state_dict()
    assert all(torch.equal(ref[k], v) for k, v in got.state_dict().items())
    assert load_pretrained(tmp_path / "m.safetensors").net is got  # shared (cached) until the file changes
    assert load_pretrained(tmp_path / "m", cache=False).net is not got


def test_shipped_weights_are_listed_by_method_and_match_their_cards_hash():
    assert available("dcdm") == ["dcdm-2d", "dcdm-3d", "dcdm-mg-2d", "dcdm-mg-3d"]
    assert available("lsm") == ["lsm-darcy"] and available("dds") == ["dds-ct", "dds-ct-broad", "dds-mri", "dds-mri-broad"]
    assert available("fcg_lsm") == ["fcg-lsm-darcy"]
    assert set(available()) == {"dcdm-2d", "dcdm-3d", "dcdm-mg-2d", "dcdm-mg-3d", "lsm-darcy", "dds-ct", "dds-mri",
                                "dds-ct-broad", "dds-mri-broad", "fcg-lsm-darcy"}
    for name in available():
        wpath, cpath = weight_files(find_weights(name))
        card = json.loads(cpath.read_text())
        assert card["sha256"] == sha256_file(wpath), name
        assert card["method"].replace("_", "-") in name
    with pytest.raises(ValueError, match="method must be one of"):
        available("bandit")


def test_names_with_dots_are_whole_names(tmp_path):
    save_weights({"w": torch.zeros(2)}, {"config": {}}, tmp_path / "run.a")
    save_weights({"w": torch.ones(2)}, {"config": {}}, tmp_path / "run.b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.a.json", "run.a.safetensors", "run.b.json",
                                                          "run.b.safetensors"]
    assert load_weights(tmp_path / "run.a")[0]["w"].tolist() == [0.0, 0.0]
    assert load_weights(tmp_path / "run.b.safetensors")[0]["w"].tolist() == [1.0, 1.0]
    assert load_weights(tmp_path / "run.b.json")[0]["w"].tolist() == [1.0, 1.0]


def test_a_file_overwritten_in_the_same_process_is_reloaded(tmp_path):
    first, second = DCDMNet(2, width=2, levels=1), DCDMNet(2, width=2, levels=1)
    with torch.no_grad():
        for p in second.parameters():
            p.add_(1.0)
    save_pretrained(first, {}, tmp_path / "m")
    a = load_model(tmp_path / "m").net
    save_pretrained(second, {}, tmp_path / "m")
    b = load_model(tmp_path / "m").net
    assert all(torch.equal(x, y) for x, y in zip(b.parameters(), second.parameters()))
    assert not all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))


def _copy(name, stem, *, card_of=None):
    """Copy shipped weights ``name`` to ``stem`` (with the card of ``card_of`` when given)."""
    w, c = weight_files(find_weights(name))
    shutil.copy(w, weight_files(stem)[0])
    shutil.copy(weight_files(find_weights(card_of or name))[1], weight_files(stem)[1])


def test_swapped_tensors_are_a_format_error_naming_the_file_and_the_mismatch(tmp_path):
    stem = tmp_path / "dds-mri"
    _copy("dds-ct", stem, card_of="dds-mri")
    with pytest.raises(FormatError, match=r"dds-mri\.safetensors: the tensors do not fit the UNet") as e:
        load_prior(stem)
    msg = str(e.value)
    assert "missing keys" in msg and "unexpected keys" in msg and "in the file" in msg
    _copy("dcdm-2d", stem, card_of="dds-mri")  # a dcdm file under a dds name
    with pytest.raises(FormatError, match=r"dds-mri\.safetensors: the tensors do not fit the UNet"):
        load_pretrained(stem)
    _copy("dcdm-2d", stem)  # both files renamed: the card says what it is
    with pytest.raises(FormatError, match=r"dds-mri\.json: method: the card describes 'dcdm' weights, not 'dds'"):
        load_prior(stem)
    assert type(load_pretrained(stem).net) is DCDMNet  # loaded as what it is


def test_a_flipped_byte_is_detected(tmp_path):
    stem = tmp_path / "lsm"
    _copy("lsm-darcy", stem)
    wpath = weight_files(stem)[0]
    data = bytearray(wpath.read_bytes())
    data[-1000] ^= 0x01  # inside the tensor data
    wpath.write_bytes(bytes(data))
    with pytest.raises(FormatError, match=r"lsm\.safetensors: the file's sha256 differs from the one in its card"):
        load_pretrained(stem)
    with pytest.raises(FormatError, match="sha256"):
        load_weights(stem)


def test_cards_without_a_method_load_through_their_method(tmp_path):
    net = DCDMNet(2, width=2, levels=1)
    save_weights(net.state_dict(), {"config": net.config}, tmp_path / "old")
    with pytest.raises(FormatError, match="names no 'method'"):
        load_pretrained(tmp_path / "old")
    assert type(load_model(tmp_path / "old").net) is DCDMNet
    with pytest.raises(ValueError, match="neither a shipped model"):
        load_pretrained("no-such-model")
    with pytest.raises(TypeError, match="not the network of a learned method"):
        save_pretrained(torch.nn.Linear(2, 2), {}, tmp_path / "x")
