"""HARNet: state_dict compatible with the released checkpoints, shapes, the fast path, clipping, bf16."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from zerohar.errors import ZeroharError
from zerohar.model.harnet import VARIANTS, HARNet, ResBlock, downsample_kernel, layer_channels, narrowed

PREFIX = "feature_extractor."


@pytest.fixture(scope="module")
def reference_dir(shared_data) -> Path:
    d = shared_data.parent / "reference"
    if not d.is_dir():
        pytest.skip("needs ../shared/reference (HARNet state_dict tables)")
    return d


def read_tsv(path: Path) -> list[tuple[str, tuple[int, ...], str]]:
    rows = []
    lines = path.read_text().splitlines()
    assert lines[0].split("\t") == ["key", "shape", "dtype"]
    for line in lines[1:]:
        key, shape, dtype = line.split("\t")
        dims = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
        rows.append((key, dims, dtype))
    return rows


def randomise_bn(net: HARNet, seed: int = 0) -> HARNet:
    """Non-trivial BatchNorm statistics, so eval-mode outputs depend on every tensor of the state_dict."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return net


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_state_dict_matches_released_key_table(reference_dir, variant):
    rows = [r for r in read_tsv(reference_dir / f"{variant}_state_dict.tsv") if r[0].startswith(PREFIX)]
    sd = HARNet(variant).state_dict()
    assert list(sd) == [k[len(PREFIX):] for k, _, _ in rows]
    for key, shape, dtype in rows:
        t = sd[key[len(PREFIX):]]
        assert tuple(t.shape) == shape, key
        assert str(t.dtype) == f"torch.{dtype}", key


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_loads_prefixed_keys_after_stripping(reference_dir, variant):
    src = randomise_bn(HARNet(variant), seed=1).eval()
    prefixed = {PREFIX + k: v for k, v in src.state_dict().items()}
    assert set(prefixed) == {k for k, _, _ in read_tsv(reference_dir / f"{variant}_state_dict.tsv") if
                             k.startswith(PREFIX)}
    dst = HARNet(variant)
    dst.load_state_dict({k[len(PREFIX):]: v for k, v in prefixed.items()}, strict=True)
    x = torch.randn(2, 3, VARIANTS[variant])
    with torch.no_grad():
        torch.testing.assert_close(dst.eval()(x), src(x))


def test_parameter_counts_as_published():
    # HARNET.md: feature extractor parameters.
    assert sum(p.numel() for p in HARNet("harnet5").parameters()) == 4_227_904
    assert sum(p.numel() for p in HARNet("harnet10").parameters()) == 10_457_408
    assert sum(p.numel() for p in HARNet("harnet30").parameters()) == 10_457_408
    # The downsample kernels are buffers, never trained.
    assert not any("kernel" in n for n, _ in HARNet("harnet5").named_parameters())


@pytest.mark.parametrize(
    "variant,path,dim",
    [
        ("harnet5", [150, 75, 37, 12, 4, 1], 512),
        ("harnet10", [300, 150, 75, 15, 3, 1], 1024),
        ("harnet30", [900, 300, 100, 20, 4, 1], 1024),
    ],
)
def test_forward_shape_and_length_path(variant, path, dim):
    net = HARNet(variant).eval()
    assert net.out_dim == dim and net.window == VARIANTS[variant] == path[0]
    lengths = []
    hooks = [getattr(net, f"layer{i}").register_forward_hook(lambda m, i, o: lengths.append(o.shape[-1]))
             for i in range(1, 6)]
    with torch.no_grad():
        out = net(torch.randn(2, 3, path[0]))
    for h in hooks:
        h.remove()
    assert out.shape == (2, dim)
    assert lengths == path[1:]


def test_downsample_kernels_are_normalised_repeated_boxes():
    # box(2) * box(2) * box(2) = [1, 3, 3, 1]; box(3) * box(3) = [1, 2, 3, 2, 1]; order 0 = the box itself.
    torch.testing.assert_close(downsample_kernel(2, 2), torch.tensor([1.0, 3, 3, 1]) / 8)
    torch.testing.assert_close(downsample_kernel(3, 1), torch.tensor([1.0, 2, 3, 2, 1]) / 9)
    torch.testing.assert_close(downsample_kernel(4, 0), torch.full((4,), 0.25))
    net = HARNet("harnet30")
    assert net.layer5[3].kernel.shape == (1024, 1, 4)
    torch.testing.assert_close(net.layer1[5].kernel[7, 0], downsample_kernel(3, 1))


def reference_forward(net: HARNet, x: torch.Tensor) -> torch.Tensor:
    """A plain 1-D functional reading of HARNET.md (F.pad circular, conv1d), eval-mode BatchNorm."""

    def bn(m, h):
        return F.batch_norm(h, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)

    def conv(m, h):
        return F.conv1d(F.pad(h, (2, 2), mode="circular"), m.weight)

    h = x
    for layer in (net.layer1, net.layer2, net.layer3, net.layer4, net.layer5):
        mods = list(layer)
        h = conv(mods[0], h)
        for block in mods[1:-3]:
            assert isinstance(block, ResBlock)
            r = conv(block.conv1, F.relu(bn(block.bn1, h)))
            h = h + conv(block.conv2, F.relu(bn(block.bn2, r)))
        h = F.relu(bn(mods[-3], h))
        ds = mods[-1]
        h = F.conv1d(h, ds.kernel, stride=ds.factor, padding=ds.padding, groups=h.shape[1])
    return h.flatten(1)


@pytest.mark.parametrize("variant", ["harnet5", "harnet10"])
def test_fast_path_equals_plain_1d_reference(variant):
    net = randomise_bn(HARNet(variant)).eval()
    x = torch.randn(3, 3, VARIANTS[variant])
    with torch.no_grad():
        torch.testing.assert_close(net(x), reference_forward(net, x), rtol=1e-4, atol=1e-5)


def test_wrong_window_length_is_a_clear_error():
    with pytest.raises(ZeroharError, match=r"harnet5 expects windows shaped \(N, 3, 150\).*got \(2, 3, 300\)"):
        HARNet("harnet5")(torch.randn(2, 3, 300))
    with pytest.raises(ZeroharError, match=r"got \(2, 6, 150\)"):
        HARNet("harnet5")(torch.randn(2, 6, 150))
    with pytest.raises(ZeroharError, match="unknown HARNet variant 'harnet7'"):
        HARNet("harnet7")


def test_clip_input_is_the_callers_choice():
    x = torch.randn(2, 3, 150) * 4  # many samples beyond +-3 g
    plain, clipping = randomise_bn(HARNet("harnet5")).eval(), HARNet("harnet5", clip_input=True).eval()
    clipping.load_state_dict(plain.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(clipping(x), plain(x.clamp(-3, 3)))
        assert not torch.allclose(plain(x), clipping(x))


def test_bf16_autocast_close_to_fp32():
    net = randomise_bn(HARNet("harnet5")).eval()
    x = torch.randn(8, 3, 150)
    with torch.inference_mode():
        ref = net(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = net(x)
    assert low.dtype == torch.bfloat16
    assert F.cosine_similarity(ref, low.float(), dim=1).min() > 0.99


def test_trains_in_training_mode():
    net = HARNet("harnet5").train()
    x = torch.randn(4, 3, 150)
    net(x).square().mean().backward()
    assert net.layer1[0].weight.grad.abs().sum() > 0
    assert int(net.layer1[1].bn1.num_batches_tracked) == 1


def _all_channels(net: HARNet) -> dict[str, torch.Tensor]:
    keep = {}
    for i in range(1, 6):
        layer = getattr(net, f"layer{i}")
        keep[f"layer{i}"] = torch.arange(layer[0].out_channels)
        for b in range(1, sum(isinstance(m, ResBlock) for m in layer) + 1):
            keep[f"layer{i}.{b}"] = torch.arange(layer[0].out_channels)
    return keep


def test_narrowed_keeping_every_channel_is_the_same_network():
    net = randomise_bn(HARNet("harnet5"), seed=3).eval()
    same = narrowed(net, 1.0, _all_channels(net)).eval()
    x = torch.randn(4, 3, 150)
    with torch.no_grad():
        torch.testing.assert_close(same(x), net(x), rtol=0, atol=0)


def test_narrowed_copies_the_kept_channels_weights_and_refuses_other_counts():
    torch.manual_seed(0)
    net = randomise_bn(HARNet("harnet5"), seed=4).eval()
    g = torch.Generator().manual_seed(1)
    keep = {k: torch.sort(torch.randperm(len(v), generator=g)[: len(v) // 2]).values
            for k, v in _all_channels(net).items()}
    small = narrowed(net, 0.5, keep)
    assert [getattr(small, f"layer{i}")[0].out_channels for i in range(1, 6)] == list(layer_channels("harnet5", 0.5))
    k1, k2, j = keep["layer1"], keep["layer2"], keep["layer2.1"]
    torch.testing.assert_close(small.layer1[0].weight, net.layer1[0].weight[k1])  # all three inputs
    torch.testing.assert_close(small.layer2[0].weight, net.layer2[0].weight[k2][:, k1])
    torch.testing.assert_close(small.layer2[1].conv1.weight, net.layer2[1].conv1.weight[j][:, k2])
    torch.testing.assert_close(small.layer2[1].conv2.weight, net.layer2[1].conv2.weight[k2][:, j])
    torch.testing.assert_close(small.layer2[1].bn2.running_var, net.layer2[1].bn2.running_var[j])
    torch.testing.assert_close(small.layer5[1].weight, net.layer5[1].weight[keep["layer5"]])  # layer5's final BN
    assert small(torch.randn(2, 3, 150)).shape == (2, 256)
    with pytest.raises(ZeroharError, match="are not those of harnet5 at width 0.25"):
        narrowed(net, 0.25, keep)
