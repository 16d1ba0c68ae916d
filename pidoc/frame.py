"""π-DOC's frame: the 160×160 maps of 0.25″ pixels every network reads and writes (CB21 §2).

The field is 40″ wide; at 15–80 kpc that is 2.9–15.5 pc (paper-CB21.md §2).
"""
MAP_PIXELS = 160
PIXEL_SCALE_ARCSEC = 0.25
MAP_HALF_WIDTH_ARCSEC = 0.5 * MAP_PIXELS * PIXEL_SCALE_ARCSEC
MAP_SHAPE = (MAP_PIXELS, MAP_PIXELS, 1)
