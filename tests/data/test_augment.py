import pytest
import torch
import torchvision.transforms.v2.functional as TF

from distillbench.data.augment import (
    AUGMENTATIONS,
    augmentation_named,
    augmentation_problem,
    crop_flip,
    random_crop_flip,
    register_augmentation,
)


def _reference(image: torch.Tensor, shift: tuple[int, int], flip: bool, pad: int) -> torch.Tensor:
    """One image through torchvision's pad / crop / flip, as a per-image pipeline would do it."""
    size = image.shape[-1]
    out = TF.crop(TF.pad(image, [pad]), shift[0], shift[1], size, size)
    return TF.horizontal_flip(out) if flip else out


def test_crop_flip_equals_torchvision_per_image():
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=generator)
    shifts = torch.randint(0, 9, (16, 2), generator=generator)
    flips = torch.rand(16, generator=generator) < 0.5
    out = crop_flip(images, shifts, flips, pad=4)
    assert out.dtype == torch.uint8 and out.shape == images.shape
    for i in range(16):
        expected = _reference(images[i], (int(shifts[i, 0]), int(shifts[i, 1])), bool(flips[i]), 4)
        assert torch.equal(out[i], expected), i


def test_random_crop_flip_is_seeded_and_covers_every_shift_and_flip():
    images = torch.randint(0, 256, (2000, 3, 8, 8), dtype=torch.uint8)
    a = random_crop_flip(images, torch.Generator().manual_seed(5))
    b = random_crop_flip(images, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert not torch.equal(a, random_crop_flip(images, torch.Generator().manual_seed(6)))
    # Recover each image's (shift, flip) by search: every one of the 9 x 9 x 2 choices occurs,
    # each about 1/162 of the time.
    candidates = {
        (dy, dx, flip): crop_flip(images, torch.tensor([[dy, dx]]).expand(len(images), 2),
                                  torch.full((len(images),), flip), 4)
        for dy in range(9) for dx in range(9) for flip in (False, True)
    }  # fmt: skip
    counts = {choice: int((candidate == a).flatten(1).all(1).sum()) for choice, candidate in candidates.items()}
    assert all(count > 0 for count in counts.values())
    flipped = sum(count for (_, _, flip), count in counts.items() if flip) / sum(counts.values())
    assert flipped == pytest.approx(0.5, abs=0.05)


def test_an_augmentation_name_registers_once():
    with pytest.raises(ValueError, match="augmentation 'crop_flip' is already registered"):
        register_augmentation("crop_flip", random_crop_flip)
    assert AUGMENTATIONS["crop_flip"] is random_crop_flip


def test_names_joined_by_plus_compose_and_none_is_no_augmentation(monkeypatch):
    monkeypatch.setitem(AUGMENTATIONS, "invert", lambda images, generator: 255 - images)
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    assert augmentation_named("none") is None and augmentation_named("none+none") is None
    assert torch.equal(augmentation_named("none+invert")(images, torch.Generator()), 255 - images)
    assert torch.equal(augmentation_named("invert+invert")(images, torch.Generator()), images)


def test_an_unknown_part_is_named_with_the_known_ones():
    assert augmentation_problem("crop_flip+none", "train.augment") is None
    assert augmentation_problem("crop_flip+crop_flp", "train.augment") == (
        "train.augment: unknown augmentation 'crop_flp'; known: none, crop_flip, trivial_augment, random_erasing "
        "(did you mean 'crop_flip'?); a+b applies a, then b"
    )
