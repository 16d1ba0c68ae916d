"""π-DOC's frame: the 160×160 maps of 0.25″ pixels every network reads and writes (CB21 §2).

The field is 40″ wide; at 15–80 kpc that is 2.9–15.5 pc (paper-CB21.md §2).
"""
import numpy as np

MAP_PIXELS = 160
PIXEL_SCALE_ARCSEC = 0.25
MAP_HALF_WIDTH_ARCSEC = 0.5 * MAP_PIXELS * PIXEL_SCALE_ARCSEC
MAP_SHAPE = (MAP_PIXELS, MAP_PIXELS, 1)


# The eight symmetries of the square frame (the dihedral group D4): a rotation by 90° k times, then
# an optional mirror. A cluster's physics is isotropic, so π-DOC's answer should not depend on which
# of them a map was shown in; the trainer draws one per map and the fast model can average all eight.
DIHEDRAL_SYMMETRIES = tuple((rotations, mirror) for rotations in range(4) for mirror in (False, True))


def dihedral_transform(images, rotations, mirror):
    """Rotate images by 90° `rotations` times, then mirror them left-right if asked.

    `images` is one (H, W, C) map or a stack (N, H, W, C); the transform acts on the two axes in front
    of the channels.
    """
    images = np.asarray(images)
    row_axis = images.ndim - 3
    images = np.rot90(images, rotations, axes=(row_axis, row_axis + 1))
    return np.flip(images, axis=row_axis + 1) if mirror else images


def inverse_dihedral_transform(images, rotations, mirror):
    """Undo `dihedral_transform(images, rotations, mirror)`: mirror back first, then rotate back."""
    images = np.asarray(images)
    row_axis = images.ndim - 3
    if mirror:
        images = np.flip(images, axis=row_axis + 1)
    return np.rot90(images, -rotations, axes=(row_axis, row_axis + 1))
