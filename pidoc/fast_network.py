"""A fast network for the general π-DOC model: both outputs from one pass at a 1″ grid.

The paper's CED (Chardin & Bianchini 2021, hereafter CB21) spends 5.06 GFLOP per map, most of it
in 3×3 convolutions at 160 and 80 pixels, and trains at 14–17 maps/s on this project's 2-core CPU
in mixed_bfloat16. This network reads the same input, a 160×160 map of standardised log10 V-band
flux (0.25″ per pixel), and predicts both targets of π-DOC in one pass:

* "mass": the standardised log10 mass map, 160×160×1;
* "distance_age": standardised [distance kpc, age Gyr], 2 values.

It costs 1.15 GFLOP per map forward (4.4× less than the CED) and has 2,315,284 parameters.

Why it can work at a 1″ grid (40×40 cells). The mock maps are convolved with a Gaussian seeing of
2.5″ FWHM = 10 pixels (σ = 4.25 px), flux and mass alike (docs/mock_clusters.md, step 13). Its
transfer function exp(−2π²σ²f²) is 0.4 % at f = 1/8 cycle/pixel, the Nyquist frequency of a grid of
4-pixel cells, so a 1″ grid holds essentially all the information of either map. The stem is a
lossless space-to-depth of 4 (160×160×1 → 40×40×16): no pixel is discarded, only re-arranged, and
every convolution after it runs on 16× fewer positions than at full resolution.

The layout, after the stem:

1. Encoder: residual blocks at 40×40 (1″), then at 20×20 and 10×10 (2″ and 4″ cells) for the
   context of the whole cluster; a 3×3 convolution at 10×10 sees 12″, half the 40″ frame.
2. Distance and age: global average and maximum pooling of the 10×10 features → dense → 2 outputs.
3. Mass: a decoder brings the 10×10 and 20×20 context back to 40×40 (1×1 convolution and
   depth-to-space, added to the encoder's features), adds a global context vector from the dense
   head (age sets the mass-to-light ratio of the whole cluster, and distance the mass per pixel at
   a given flux per pixel), runs a residual block, and predicts a 4×4 patch
   of 16 sub-pixels per cell, put in place by a depth-to-space of 4. That residual is added to a
   learned affine of the input: log M = log F + log(M/L) + const, so in standardised units
   mass = a·flux + b + residual, where the residual is a smooth log M/L-like correction.

No batch normalisation: Keras 3 BatchNormalization has no fused kernel on TensorFlow and costs
10–40 % of a step on this CPU (tf-stack.md §4). The residual branches instead end with a
convolution initialised with a variance 2/L times that of He initialisation, L the number of
residual blocks, so that the L branches together add about as much variance as the input has
(the idea of Fixup, Zhang et al. 2019), and training starts stable without normalisation.

Precision. Under the mixed_bfloat16 policy every convolution and dense layer computes in bfloat16,
except the layers that make the outputs: the flux skip (the affine), the last mass convolution, its
depth-to-space and the sum, and the last dense layer, all pinned to float32. The standardised flux
itself therefore never goes through bfloat16 (8 bits of mantissa, 0.4 % steps, or 0.003 dex of a
standardised value of 2) on its way to the mass output. The learned residual does: bfloat16 features
carry about 0.5 % relative rounding after a dozen layers, so bf16 and float32 inference of the same
weights differ by about 0.5 % of the residual. Measured on the committed test maps after 20–80
training steps: rms 0.002–0.004 and max 0.02–0.036 standardised units, i.e. max 0.015–0.03 dex for a
0.8-dex standard deviation of log mass. Where 0.01 dex matters, infer in float32 (half the speed).

The module imports numpy, keras, tensorflow and the seed sequence of `pidoc.networks`. The two
custom layers (space-to-depth and depth-to-space) are registered with Keras under the package "pidoc", so `save_weights` /
`load_weights` and `.keras` files round-trip.
"""
import keras
import numpy as np
import tensorflow as tf

from pidoc.networks import SeedSequence

# --- Identity --------------------------------------------------------------------------------------
# Written in a model folder's architecture record; change it whenever a setting below changes.
ARCHITECTURE_NAME = "fast-s2d-v1"

# --- Input and outputs (CB21 §2) ------------------------------------------------------------------
MAP_PIXELS = 160
MAP_SHAPE = (MAP_PIXELS, MAP_PIXELS, 1)
MASS_OUTPUT_NAME = "mass"
DISTANCE_AGE_OUTPUT_NAME = "distance_age"
DISTANCE_AGE_OUTPUTS = 2

# --- Stem ------------------------------------------------------------------------------------------
# Space-to-depth of 4: 160×160×1 → 40×40×16, a 1″ grid. Seeing of 2.5″ FWHM = 10 px leaves 0.4 % of
# the amplitude at this grid's Nyquist frequency (module docstring), so no finer feature grid is
# needed; the 16 channels keep every input pixel.
SPACE_TO_DEPTH_BLOCK = 4

# --- Encoder ---------------------------------------------------------------------------------------
# Channels and residual blocks at 40×40, 20×20 and 10×10 cells. Widths are multiples of 64, which the
# bfloat16 dot-product kernels of oneDNN (AVX512_BF16) fill without padding; the width doubles when
# the cell count drops by 4, so every 3×3 convolution of the trunk costs the same 118 MFLOP per map.
# Receptive field of the deepest features: 37 cells of 4 px = 148 px, nearly the 160-px frame.
# Variants measured on this CPU in mixed_bfloat16 for issue 13 (benchmarks/training_throughput.py):
# two blocks at 40×40 (1.38 GFLOP/map) train at 138 maps/s, below the goal of 150; this layout
# (1.15 GFLOP/map) trains at about 160, with the 40×40 block budget spent after the context is back
# (DECODER_BLOCKS), where the mass map is made.
STAGE_CELLS = (40, 20, 10)
STAGE_WIDTHS = (64, 128, 256)
ENCODER_BLOCKS = (1, 1, 1)
CONVOLUTION_KERNEL_SIZE = 3

# --- Decoder (mass) --------------------------------------------------------------------------------
# Residual blocks at 40×40 and 20×20 after the context of the deeper stage is added back.
DECODER_BLOCKS = (1, 0)
# One output per sub-pixel of a 4×4 cell, arranged by a depth-to-space of SPACE_TO_DEPTH_BLOCK.
MASS_RESIDUAL_CHANNELS = SPACE_TO_DEPTH_BLOCK**2
# The residual starts small, so the first mass prediction is the affine of the flux.
MASS_RESIDUAL_INITIAL_SCALE = 0.01
# The affine of the standardised flux starts as the identity (a = 1, b = 0) and is learned; with a
# cluster's M/L constant it would be σ_F/σ_M (0.97/0.45 ≈ 2.2 for the CB21 constants). Mass per
# pixel also grows as D² at a fixed flux per pixel (a pixel covers D² more parsecs²), a per-map
# offset that the residual gets from the context vector, which comes from the same hidden layer as
# the distance.
FLUX_SKIP_INITIAL_SLOPE = 1.0

# No full-resolution refinement (two 3×3 convolutions on [flux, mass] at 160×160, 8 channels): the
# mass maps are smoothed by the same 2.5″ seeing as the flux (docs/mock_clusters.md, step 13), so even
# a segregated cluster's central peak is ≥ 10 px wide and the 16 sub-pixel outputs per 4×4 cell can
# draw it. Measured, the refinement costs 10–14 % of the training speed for 1 % more FLOP (it is
# memory-bound); 0 turns it off, a positive number of channels turns it on.
REFINEMENT_CHANNELS = 0

# --- Distance and age head -------------------------------------------------------------------------
# Global average and maximum of the 10×10 features (2 × 256 values) → one hidden dense layer.
HEAD_UNITS = 256


@keras.saving.register_keras_serializable(package="pidoc")
class SpaceToDepth(keras.layers.Layer):
    """Rearrange each block×block patch of pixels into channels (`tf.nn.space_to_depth`).

    Parameters
    ----------
    block_size : int
        Side of the patch; height and width must be multiples of it.
    """

    def __init__(self, block_size, **kwargs):
        super().__init__(**kwargs)
        self.block_size = int(block_size)

    def call(self, inputs):
        return tf.nn.space_to_depth(inputs, self.block_size)

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        block = self.block_size
        return (batch, None if height is None else height // block, None if width is None else width // block,
                None if channels is None else channels * block * block)

    def get_config(self):
        return {**super().get_config(), "block_size": self.block_size}


@keras.saving.register_keras_serializable(package="pidoc")
class DepthToSpace(keras.layers.Layer):
    """Rearrange channels into block×block patches of pixels (`tf.nn.depth_to_space`).

    Parameters
    ----------
    block_size : int
        Side of the patch; the channel count must be a multiple of its square.
    """

    def __init__(self, block_size, **kwargs):
        super().__init__(**kwargs)
        self.block_size = int(block_size)

    def call(self, inputs):
        return tf.nn.depth_to_space(inputs, self.block_size)

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        block = self.block_size
        return (batch, None if height is None else height * block, None if width is None else width * block,
                None if channels is None else channels // (block * block))

    def get_config(self):
        return {**super().get_config(), "block_size": self.block_size}


def _convolution(tensor, filters, name, seeds, kernel_size=CONVOLUTION_KERNEL_SIZE, strides=1, activation="relu",
                 initial_scale=2.0, dtype=None):
    """A 'same'-padded Conv2D with a seeded variance-scaling (He for scale 2) kernel initialiser."""
    initializer = keras.initializers.VarianceScaling(scale=initial_scale, mode="fan_in", distribution="truncated_normal",
                                                     seed=seeds())
    return keras.layers.Conv2D(filters, kernel_size, strides=strides, padding="same", activation=activation,
                               kernel_initializer=initializer, name=name, dtype=dtype)(tensor)


def _residual_block(tensor, filters, name, seeds, branch_scale):
    """tensor + Conv3×3(Conv3×3-ReLU(tensor)); the second kernel starts at `branch_scale` × He variance."""
    branch = _convolution(tensor, filters, f"{name}_convolution1", seeds)
    branch = _convolution(branch, filters, f"{name}_convolution2", seeds, activation=None,
                          initial_scale=2.0 * branch_scale)
    return keras.layers.Add(name=f"{name}_add")([tensor, branch])


def _upsample_and_add(coarse, fine, name, seeds, branch_scale):
    """Add the coarse stage's features to the finer one: 1×1 conv to 4× the fine width, depth-to-space 2.

    Like a residual branch, the 1×1 kernel starts at `branch_scale` × the variance that keeps the
    magnitude of its input, so the sum grows little at initialisation.
    """
    filters = fine.shape[-1]
    coarse = _convolution(coarse, 4 * filters, f"{name}_convolution", seeds, kernel_size=1, activation=None,
                          initial_scale=branch_scale)
    coarse = DepthToSpace(2, name=f"{name}_depth_to_space")(coarse)
    return keras.layers.Add(name=f"{name}_add")([fine, coarse])


def _build(seed, stage_widths=STAGE_WIDTHS, encoder_blocks=ENCODER_BLOCKS, decoder_blocks=DECODER_BLOCKS,
           head_units=HEAD_UNITS, refinement_channels=REFINEMENT_CHANNELS, name="fast_network"):
    """Build the network for the given settings (the public builder passes the module's constants).

    The keyword arguments exist to measure variants (issue 13); `build_fast_network` uses the
    module's constants. `refinement_channels` > 0 adds two 3×3 convolutions at full resolution
    after the mass sum; fewer than three stage widths drop the deeper stages.
    """
    seeds = SeedSequence(seed)
    stages = len(stage_widths)
    residual_blocks = sum(encoder_blocks[:stages]) + sum(decoder_blocks[:stages - 1])
    branch_scale = 1.0 / max(residual_blocks, 1)

    flux = keras.Input(shape=MAP_SHAPE, name="flux", dtype="float32")
    tensor = SpaceToDepth(SPACE_TO_DEPTH_BLOCK, name="space_to_depth")(flux)
    tensor = _convolution(tensor, stage_widths[0], "stem_convolution", seeds)
    skips = []
    for stage, (width, blocks) in enumerate(zip(stage_widths, encoder_blocks)):
        cells = STAGE_CELLS[stage]
        if stage > 0:
            tensor = _convolution(tensor, width, f"encoder{cells}_downsample", seeds, strides=2)
        for block in range(blocks):
            tensor = _residual_block(tensor, width, f"encoder{cells}_block{block + 1}", seeds, branch_scale)
        skips.append(tensor)

    # Distance and age from the whole frame.
    pooled = keras.layers.Concatenate(name="head_pooling")([keras.layers.GlobalAveragePooling2D(name="head_average")(tensor),
                                                            keras.layers.GlobalMaxPooling2D(name="head_maximum")(tensor)])
    hidden = keras.layers.Dense(head_units, activation="relu", name="head_dense",
                                kernel_initializer=keras.initializers.HeNormal(seed=seeds()))(pooled)
    distance_age = keras.layers.Dense(DISTANCE_AGE_OUTPUTS, name=DISTANCE_AGE_OUTPUT_NAME, dtype="float32",
                                      kernel_initializer=keras.initializers.GlorotUniform(seed=seeds()))(hidden)

    # Mass: bring the context back up to 40×40.
    for stage in range(stages - 1, 0, -1):
        cells = STAGE_CELLS[stage - 1]
        tensor = _upsample_and_add(tensor, skips[stage - 1], f"decoder{cells}_upsample", seeds, branch_scale)
        if stage - 1 == 0:
            # The cluster-wide context as a per-channel offset of the 40×40 features, from the head's
            # hidden layer: age sets the mass-to-light ratio of the whole cluster, and distance the mass
            # per pixel at a given flux per pixel (∝ D²). It starts small, as a residual branch.
            context = keras.layers.Dense(stage_widths[0], name="decoder40_context",
                                         kernel_initializer=keras.initializers.VarianceScaling(
                                             scale=branch_scale, mode="fan_in", distribution="truncated_normal",
                                             seed=seeds()))(hidden)
            context = keras.layers.Reshape((1, 1, stage_widths[0]), name="decoder40_context_reshape")(context)
            tensor = keras.layers.Add(name="decoder40_context_add")([tensor, context])
        for block in range(decoder_blocks[stage - 1]):
            tensor = _residual_block(tensor, stage_widths[stage - 1], f"decoder{cells}_block{block + 1}", seeds, branch_scale)
    residual = _convolution(tensor, MASS_RESIDUAL_CHANNELS, "mass_residual_convolution", seeds, kernel_size=1,
                            activation=None, initial_scale=MASS_RESIDUAL_INITIAL_SCALE, dtype="float32")
    residual = DepthToSpace(SPACE_TO_DEPTH_BLOCK, name="mass_residual_depth_to_space", dtype="float32")(residual)
    affine = keras.layers.Conv2D(1, 1, name="flux_skip", dtype="float32",
                                 kernel_initializer=keras.initializers.Constant(FLUX_SKIP_INITIAL_SLOPE))(flux)
    if refinement_channels:
        coarse = keras.layers.Add(name="mass_coarse", dtype="float32")([affine, residual])
        refined = keras.layers.Concatenate(name="refinement_inputs")([flux, coarse])
        refined = _convolution(refined, refinement_channels, "refinement_convolution1", seeds)
        refined = _convolution(refined, 1, "refinement_convolution2", seeds, activation=None,
                               initial_scale=MASS_RESIDUAL_INITIAL_SCALE, dtype="float32")
        mass = keras.layers.Add(name=MASS_OUTPUT_NAME, dtype="float32")([coarse, refined])
    else:
        mass = keras.layers.Add(name=MASS_OUTPUT_NAME, dtype="float32")([affine, residual])
    return keras.Model(flux, {MASS_OUTPUT_NAME: mass, DISTANCE_AGE_OUTPUT_NAME: distance_age}, name=name)


def build_fast_network(seed=None):
    """Build the uncompiled fast π-DOC network (module docstring), one input and two named outputs.

    Parameters
    ----------
    seed : int or None
        Seed of the weight initialisation: every initialiser gets its own seed (seed, seed + 1, …),
        so the same seed gives identical weights. None draws random weights.

    Returns
    -------
    keras.Model
        Input "flux" (None, 160, 160, 1) float32; outputs {"mass": (None, 160, 160, 1),
        "distance_age": (None, 2)}, both float32 under any dtype policy.
    """
    return _build(seed)


def forward_gflop_per_map(model):
    """Forward cost of one map in GFLOP: 2 × multiply-accumulates of every convolution and dense layer.

    Counts Conv2D (including strided and 1×1), DepthwiseConv2D and Dense layers from their kernel
    and output shapes; biases, activations, additions and re-arrangements are left out.

    Parameters
    ----------
    model : keras.Model

    Returns
    -------
    float
    """
    multiply_accumulates = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            kernel_height, kernel_width, input_channels, multiplier = layer.kernel.shape
            _, height, width, _ = layer.output.shape
            multiply_accumulates += kernel_height * kernel_width * input_channels * multiplier * height * width
        elif isinstance(layer, keras.layers.Conv2D):
            kernel_height, kernel_width, input_channels, filters = layer.kernel.shape
            _, height, width, _ = layer.output.shape
            multiply_accumulates += kernel_height * kernel_width * input_channels * filters * height * width
        elif isinstance(layer, keras.layers.Dense):
            multiply_accumulates += int(np.prod(layer.kernel.shape))
    return 2 * multiply_accumulates / 1e9
