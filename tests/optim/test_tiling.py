"""The CPU tiling covers every element exactly once, in aligned views."""

import torch

from optim.tiling import tiles


def test_tiles_cover_every_element_once_and_align():
    shapes = [(3, 5), (100,), (7, 7, 3), (1,), (40, 2)]
    a = [torch.zeros(s) for s in shapes]
    b = [torch.arange(torch.Size(s).numel(), dtype=torch.float32).reshape(s) for s in shapes]
    strided = torch.zeros(6, 4).t()  # not contiguous: must stay whole
    a.append(strided)
    b.append(torch.ones(4, 6))
    count = 0
    for a_tile, b_tile in tiles(a, b, numel=16):
        assert len(a_tile) == len(b_tile)
        assert all(x.shape == y.shape for x, y in zip(a_tile, b_tile, strict=True))
        torch._foreach_add_(a_tile, b_tile)
        torch._foreach_add_(a_tile, 1.0)
        count += 1
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y + 1)  # each element got exactly one +1
    assert count > 5


def test_small_input_is_one_tile_and_empty_input_gives_none():
    assert list(tiles([], [])) == []
    a = [torch.zeros(3)]
    (only,) = list(tiles(a, numel=100))
    assert only[0][0] is not None and only[0][0].numel() == 3
