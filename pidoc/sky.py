"""Sky level of an image that a globular cluster fills, without taking the cluster's light for sky.

A globular cluster's half-light radius (NGC 1261: 0.68′ = 41″, Harris 1996, 2010 edition) is as large as
many detectors, so "the pixels far from the centre" are cluster light. `estimate_sky` takes, in order: the
user's value; a robust level in a region the user says is sky; a header keyword proving the sky was already
subtracted (residual 0); or a fit of a projected limepy model (Gieles & Zocchi 2015, MNRAS 454, 576) plus a
constant to the image's radial profile, used only where the fit pins the constant down (otherwise
`SkyUndeterminedError` says what to give). Levels are in the image's units per pixel (the image must be
linear in flux); pixel coordinates are 0-based (x = column, y = row), as astropy's WCS with origin 0.
"""
from dataclasses import dataclass
import functools

import numpy as np
import scipy
from scipy import optimize
from astropy.stats import mad_std, sigma_clipped_stats

# Sigma clipping (3σ about the median) removes stars and cosmic rays; the clipped *mean* is kept, not
# the median, which for a Poisson sky of a few counts is quantised to integers (as in observations.py).
CLIP_SIGMA, CLIP_ITERATIONS = 3.0, 10
MINIMUM_REGION_PIXELS, MINIMUM_ANNULUS_PIXELS, MINIMUM_ANNULI = 25, 20, 8
DEFAULT_ANNULUS_COUNT, RADIUS_SAMPLES = 48, 8
# The profile fit is accepted when the sky's 1σ error is within this fraction of the cluster's fitted
# light at the frame's edge (outermost annulus): 10 % of the edge light is 0.04 dex in log F there.
DEFAULT_MAXIMUM_UNCERTAINTY_FRACTION = 0.1
# The fitted family: limepy's concentration W0 and truncation g (g = 1 is King 1966, g = 2 Wilson 1975;
# π-DOC's mocks are limepy models with g = 1.5). limepy is preferred to the King (1962, AJ 67, 471)
# formula because π-DOC's training clusters are limepy models, and a family that cannot follow the
# profile's outer curvature pushes the misfit into the constant, i.e. into the sky. W0 and g vary
# continuously in these bounds (limepy solves reliably there; measured here), by blending profiles
# computed on nodes NODE_STEP_W0 × NODE_STEP_G apart; LOG_RADIUS_GRID is log10(R / r_h).
CONCENTRATION_BOUNDS_W0, TRUNCATION_BOUNDS_G = (1.0, 12.0), (0.25, 2.25)
NODE_STEP_W0, NODE_STEP_G = 0.125, 0.0625
LOG_RADIUS_GRID = np.linspace(-3.0, 2.5, 441)
STARTING_CONCENTRATIONS_W0, STARTING_TRUNCATIONS_G = np.arange(2.0, 12.01, 1.0), (0.5, 1.0, 1.5, 2.0)
# Trial half-light radii in units of the frame's outermost radius: from a cluster much smaller than the
# frame to one so large that the frame holds only its flat core (where the sky is degenerate).
HALF_LIGHT_RADIUS_TRIALS = np.geomspace(0.03, 300.0, 81)
# Each annulus' error is widened by this fraction of its fitted cluster light (see fit_profile_sky).
MODEL_ERROR_FRACTION = 0.005


@dataclass(frozen=True)
class SkyEstimate:
    """A sky level: value and 1σ uncertainty in the image's units per pixel, how, and how sure."""

    value: float
    uncertainty: float
    method: str
    detail: str


class SkyUndeterminedError(ValueError):
    """The image does not determine its sky; the message says what the user must give."""


def _what_is_needed(source_name, reason):
    return (f"{source_name + ': ' if source_name else ''}the sky cannot be determined from the image ({reason}); "
            "give the sky level with --background VALUE (in the image's units per pixel, 0 if already "
            "subtracted) or a sky-only box with --background-region x0 x1 y0 y1 (0-based pixels, x1 and y1 excluded)")


def _is_finite_number(value):
    try:
        return bool(np.isfinite(float(value)))
    except (TypeError, ValueError):  # Not a number at all.
        return False


def _header_value(headers, keyword):
    """The first value of `keyword` in a sequence of headers (or HDUs); None where absent."""
    for header in headers:
        header = getattr(header, "header", header)
        if header is not None and keyword in header:
            return header[keyword]
    return None


def _sky_from_header(headers):
    """(`SkyEstimate` or None, sentence on other keywords): a keyword proving the sky was subtracted.

    Our reading of each keyword:
    - MDRIZSKY (HST; drizzlepac's ``sky`` step): the sky AstroDrizzle measured on an exposure (clipped
      median per chip, lowest chip) and wrote into the input FLT/FLC headers without changing their
      pixels; drizzled products are made with it subtracted (drizzlepac's ``ablot`` adds it back). In a
      drizzled product (NDRIZIM, D001VER or D001DATA present) the residual sky is therefore 0; in an FLT
      it is an estimate from the image itself.
    - BKGSUB / BKGLEVEL (JWST ``skymatch`` documentation): BKGLEVEL is the computed sky and BKGSUB says
      whether it was subtracted; BKGSUB = T proves a residual of 0.
    - BACKGRND (HST/WFPC2 calwp2, header comment "estimated background level"): a statistic of the chip's
      own pixels; nothing was subtracted.
    Estimates from the image's own pixels (FLT MDRIZSKY, BKGLEVEL with BKGSUB = F, BACKGRND) measure the
    cluster where it fills the detector (skymatch's documentation warns that the "sky" may then be the
    extended source; BACKGRND is 1.50 DN on the NGC 1261 PC chip, whose median is 1.19 DN), so they are
    not used as the sky; they are quoted as likely upper limits.
    """
    mdrizsky, subtracted, level = (_header_value(headers, name) for name in ("MDRIZSKY", "BKGSUB", "BKGLEVEL"))
    not_assessed = "its uncertainty is not assessed (0 means 'as recorded')"
    if mdrizsky is not None and any(_header_value(headers, name) is not None for name in ("NDRIZIM", "D001VER", "D001DATA")):
        return SkyEstimate(0.0, 0.0, "header keyword MDRIZSKY", (
            f"drizzled product: the header records that MDRIZSKY = {float(mdrizsky):.6g} was subtracted, so the "
            f"residual sky is 0; {not_assessed}, and where the cluster fills the detector the subtracted value "
            "may have held cluster light")), ""
    if subtracted is True or str(subtracted).strip().upper() in ("T", "TRUE"):
        recorded = f" (BKGLEVEL = {float(level):.6g})" if level is not None else ""
        return SkyEstimate(0.0, 0.0, "header keyword BKGSUB", (
            f"the header's BKGSUB = T records that the sky{recorded} was subtracted, so the residual sky is 0; "
            f"{not_assessed}")), ""
    estimates = [(name, value) for name, value in (("MDRIZSKY", mdrizsky), ("BKGLEVEL", level),
                                                   ("BACKGRND", _header_value(headers, "BACKGRND"))) if value is not None]
    return None, "; ".join(f"the header's {name} = {float(value):.6g} is an estimate from the image's own pixels, "
                           "likely an upper limit where the cluster fills the frame" for name, value in estimates)


def _robust_level(values):
    """Sigma-clipped mean of `values` and its standard error."""
    mean, _, standard_deviation = sigma_clipped_stats(values, sigma=CLIP_SIGMA, maxiters=CLIP_ITERATIONS)
    kept = int((np.abs(values - mean) <= CLIP_SIGMA * standard_deviation).sum()) if standard_deviation > 0 else values.size
    return float(mean), float(standard_deviation / np.sqrt(max(kept, 1)))


def _region_pixels(image, valid, background_region):
    """The valid pixels of the user's sky region (boolean mask, or (x0, x1, y0, y1) box) and a description."""
    region = np.asarray(background_region)
    if region.dtype == bool:
        if region.shape != image.shape:
            raise ValueError(f"background_region mask has shape {region.shape}, the image {image.shape}")
        selected, description = region, f"mask of {int(region.sum())} pixels"
    else:
        if region.shape != (4,) or not all(_is_finite_number(bound) for bound in region):
            raise ValueError(f"background_region = {background_region!r}: expected (x0, x1, y0, y1) or a boolean mask")
        x0, x1, y0, y1 = (int(round(float(bound))) for bound in region)
        rows, columns = image.shape
        if not (0 <= x0 < x1 <= columns and 0 <= y0 < y1 <= rows):
            raise ValueError(f"background_region = {background_region!r} lies outside the {columns}×{rows} image "
                             "(need 0 <= x0 < x1 <= width, 0 <= y0 < y1 <= height; 0-based, x1 and y1 excluded)")
        selected = np.zeros(image.shape, bool)
        selected[y0:y1, x0:x1] = True
        description = f"box x {x0}–{x1 - 1}, y {y0}–{y1 - 1}"
    pixels = image[selected & valid]
    if pixels.size < MINIMUM_REGION_PIXELS:
        raise ValueError(f"background_region = {background_region!r} holds {pixels.size} valid pixels, "
                         f"too few (< {MINIMUM_REGION_PIXELS}) for a sky level")
    return pixels, description


def radial_profile(image, valid, centre_xy_pixels, annulus_count=DEFAULT_ANNULUS_COUNT):
    """Azimuthal profile: per annulus, radii (pixels) sampling its pixels, the clipped mean and its error.

    Annuli are equally wide out to the farthest valid pixel (the frame's corners), partly covered ones
    using the pixels they have. The clipped mean is robust to stars and shift-equivariant (a constant sky
    stays a constant). `RADIUS_SAMPLES` quantiles of each annulus' radii let a model be averaged over it as
    the data are (a model at the mean radius is biased where the profile curves).
    """
    rows, columns = np.indices(image.shape)
    radius_pixels = np.hypot(columns - centre_xy_pixels[0], rows - centre_xy_pixels[1])[valid]
    values = image[valid]
    annulus = np.digitize(radius_pixels, np.linspace(0.0, radius_pixels.max() * (1 + 1e-9), annulus_count + 1)) - 1
    order = np.argsort(annulus, kind="stable")
    boundaries = np.searchsorted(annulus[order], np.arange(annulus_count + 1))
    quantiles = (np.arange(RADIUS_SAMPLES) + 0.5) / RADIUS_SAMPLES
    samples, levels = [], []
    for index in range(annulus_count):
        members = order[boundaries[index]:boundaries[index + 1]]
        if members.size >= MINIMUM_ANNULUS_PIXELS:
            samples.append(np.quantile(radius_pixels[members], quantiles))
            levels.append(_robust_level(values[members]))
    levels = np.reshape(levels, (-1, 2))
    return np.reshape(samples, (-1, RADIUS_SAMPLES)), levels[:, 0], levels[:, 1]


@functools.lru_cache(maxsize=1024)
def limepy_profile_node(concentration_index, truncation_index):
    """Projected single-mass limepy profile Σ(R)/Σ(0) on `LOG_RADIUS_GRID`, at node (W0, g) of these indices.

    Single-mass models: light follows mass, so the projected half-mass radius ``rhp`` is the half-light
    radius. limepy's own points are interpolated in log Σ against log R; Σ is 0 beyond truncation.
    """
    import limepy

    concentration = CONCENTRATION_BOUNDS_W0[0] + concentration_index * NODE_STEP_W0
    truncation = TRUNCATION_BOUNDS_G[0] + truncation_index * NODE_STEP_G
    try:
        model = limepy.limepy(concentration, truncation, M=1.0, rh=1.0, project=True, verbose=False)
    except TypeError as error:  # astro-limepy 1.3.0 on scipy >= 1.17 (docs/mock_clusters.md).
        raise RuntimeError(f"limepy failed on scipy {scipy.__version__} ({error}); the project pins scipy 1.16.3, "
                           "and its mock-cluster module holds a shim for newer scipy") from error
    positive = (model.R > 0) & (model.Sigma > 0)
    log_radius, log_sigma = np.log10(model.R[positive] / model.rhp), np.log10(model.Sigma[positive] / model.Sigma[0])
    return np.where(LOG_RADIUS_GRID > log_radius[-1], 0.0, 10.0 ** np.interp(LOG_RADIUS_GRID, log_radius, log_sigma))


def _shape(parameters, radius_arcsec):
    """Normalised Σ averaged over the last axis of `radius_arcsec`, for (log10 r_h in arcsec, W0, g).

    Profiles are blended bilinearly in Σ between nodes; at 0.125 in W0 and 0.0625 in g this reproduces
    limepy to 0.2-0.5 % inside 4 r_h (1.6 % for W0 = 3.3, g = 0.6, near truncation; measured here), about
    as well as limepy's own projection agrees with itself on a finer radius grid (~1 %).
    """
    position, index = [], []
    nodes = ((CONCENTRATION_BOUNDS_W0, NODE_STEP_W0), (TRUNCATION_BOUNDS_G, NODE_STEP_G))
    for value, ((low, high), step) in zip(parameters[1:], nodes):
        position.append((min(max(value, low), high) - low) / step)
        index.append(min(int(position[-1]), round((high - low) / step) - 1))
    fraction_w0, fraction_g = position[0] - index[0], position[1] - index[1]
    profile = 0.0
    for step_w0, weight_w0 in ((0, 1 - fraction_w0), (1, fraction_w0)):
        for step_g, weight_g in ((0, 1 - fraction_g), (1, fraction_g)):
            if weight_w0 * weight_g > 0:  # Nodes of zero weight are not computed.
                profile = profile + weight_w0 * weight_g * limepy_profile_node(index[0] + step_w0, index[1] + step_g)
    log_scaled = np.log10(np.maximum(radius_arcsec, 1e-12)) - parameters[0]
    return np.interp(log_scaled, LOG_RADIUS_GRID, profile, right=0.0).mean(axis=-1)


def _linear_fit(shape, level, weight):
    """Weighted least squares of level = A·shape + c with A ≥ 0: (χ², A, c)."""
    s_w, s_ww, s_1 = (weight * shape).sum(), (weight * shape ** 2).sum(), weight.sum()
    y_w, y_1 = (weight * shape * level).sum(), (weight * level).sum()
    determinant = s_ww * s_1 - s_w ** 2
    amplitude = (s_1 * y_w - s_w * y_1) / determinant if determinant > 1e-12 * s_ww * s_1 else 0.0
    sky = (s_ww * y_1 - s_w * y_w) / determinant if amplitude > 0 else y_1 / s_1  # A = 0: the constant alone.
    amplitude = max(amplitude, 0.0)
    return float((weight * (level - amplitude * shape - sky) ** 2).sum()), amplitude, sky


def _fit_at(nonlinear, radius_samples_arcsec, level, weight, bounds):
    """χ², A, c and the constant's 1σ error (inverse Fisher matrix of all five parameters) at (r_h, W0, g)."""
    shape = _shape(nonlinear, radius_samples_arcsec)
    chi2, amplitude, sky = _linear_fit(shape, level, weight)
    columns = [shape, np.ones_like(level)]  # Jacobian in (A, c, log10 r_h, W0, g), central differences.
    for index, step in enumerate((0.005, 0.05, 0.05)):
        upper, lower = nonlinear.copy(), nonlinear.copy()
        upper[index] = min(nonlinear[index] + step, bounds[1][index])
        lower[index] = max(nonlinear[index] - step, bounds[0][index])
        columns.append(amplitude * (_shape(upper, radius_samples_arcsec) - _shape(lower, radius_samples_arcsec))
                       / (upper[index] - lower[index]))
    jacobian = np.array(columns).T
    scale = max(1.0, chi2 / max(level.size - 5, 1))
    free = [0, 1, 2, 3, 4] if amplitude > 0 else [1]
    try:
        covariance = np.linalg.inv(jacobian[:, free].T @ (weight[:, None] * jacobian[:, free])) * scale
        variance = covariance[free.index(1), free.index(1)]
    except np.linalg.LinAlgError:
        variance = np.inf
    return dict(chi2=chi2, sky=sky, sky_error=float(np.sqrt(variance)) if np.isfinite(variance) and variance >= 0 else np.inf,
                amplitude=amplitude, parameters=nonlinear, error_scale=float(np.sqrt(scale)))


def fit_profile_sky(radius_samples_arcsec, level, level_error, model_error_fraction=MODEL_ERROR_FRACTION):
    """Fit amplitude × limepy profile + constant to a radial profile: dict with the constant and its 1σ error.

    `radius_samples_arcsec` (annuli × samples) holds the radii over which the model is averaged per
    annulus. A (≥ 0) and the constant are linear and solved exactly; (log10 r_h, W0, g) are found by
    bounded least squares from the best grid node of each g, since the χ² surface has separate valleys
    (a compact truncated model against an extended one with a lower sky). The fit is repeated with each
    annulus' error widened by `model_error_fraction` of the first fit's cluster light: the model is
    known to ~0.5-1 % and real clusters deviate more, so a bright core's precision must not pin the sky
    by extrapolation. The constant's error (inverse Fisher matrix) is widened to any other valley within
    Δχ² = 1 and scaled so that χ²/dof ≥ 1 (stars make annuli scatter more than their pixel noise).
    """
    log_outermost = np.log10(radius_samples_arcsec.max())
    bounds = np.array([(log_outermost - 2.0, log_outermost + 2.6), CONCENTRATION_BOUNDS_W0, TRUNCATION_BOUNDS_G]).T

    def residuals(nonlinear, weight):
        shape = _shape(nonlinear, radius_samples_arcsec)
        _, amplitude, sky = _linear_fit(shape, level, weight)
        return (level - amplitude * shape - sky) * np.sqrt(weight)

    def refine(start, weight):  # Steps of ~0.002 dex in r_h and ~0.01 in W0 and g.
        start = np.clip(start, bounds[0] + 1e-6, bounds[1] - 1e-6)
        return optimize.least_squares(residuals, start, args=(weight,), bounds=bounds, x_scale=[0.1, 1.0, 0.3], xtol=1e-4,
                                      diff_step=[2e-3 / max(abs(start[0]), 1.0), 2e-3, 1e-2], ftol=1e-8, max_nfev=100).x

    weight = 1.0 / np.maximum(level_error, 1e-12 * np.abs(level).max() + 1e-300) ** 2
    starts = {}
    for concentration in STARTING_CONCENTRATIONS_W0:
        for truncation in STARTING_TRUNCATIONS_G:
            for log_ratio in np.log10(HALF_LIGHT_RADIUS_TRIALS):
                trial = (log_outermost + log_ratio, concentration, truncation)
                trial = (float((residuals(trial, weight) ** 2).sum()), trial)
                starts[truncation] = min(starts.get(truncation, trial), trial, key=lambda item: item[0])
    first = [refine(start, weight) for _, start in starts.values()]
    shape = _shape(min(first, key=lambda nonlinear: float((residuals(nonlinear, weight) ** 2).sum())), radius_samples_arcsec)
    weight = 1.0 / (1.0 / weight + (model_error_fraction * _linear_fit(shape, level, weight)[1] * shape) ** 2)
    fits = [_fit_at(refine(nonlinear, weight), radius_samples_arcsec, level, weight, bounds) for nonlinear in first]
    best = min(fits, key=lambda fit: fit["chi2"])
    best["sky_error"] = max([best["sky_error"]] + [abs(fit["sky"] - best["sky"]) for fit in fits
                                                   if fit["chi2"] <= best["chi2"] + best["error_scale"] ** 2])
    return best


def estimate_sky(image, centre_xy_pixels, pixel_scale_arcsec, header=None, background=None, background_region=None,
                 saturation_level=None, source_name=None, annulus_count=DEFAULT_ANNULUS_COUNT,
                 maximum_uncertainty_fraction=DEFAULT_MAXIMUM_UNCERTAINTY_FRACTION, reference_radius_arcsec=None):
    """Sky level of an image that a globular cluster may fill, never taking the cluster's light for sky.

    Parameters
    ----------
    image : array_like, shape (rows, columns)
        Linear in flux (counts, rates, flux); NaN or masked pixels are ignored.
    centre_xy_pixels : (float, float)
        Cluster centre, 0-based (x = column, y = row); must lie on the image.
    pixel_scale_arcsec : float
        Pixel size in arcseconds.
    header : astropy.io.fits.Header, mapping, HDU, or a list of them, optional
        Searched in order (image extension, then primary) for the keywords `_sky_from_header` reads and SATURATE.
    background : float, optional
        The user's sky level; takes precedence over everything else.
    background_region : (x0, x1, y0, y1) or boolean array, optional
        Sky-only pixels: a box of 0-based bounds (x1, y1 excluded) or a mask shaped like the image.
    saturation_level : float, optional
        Pixels at or above it are ignored; default the header's SATURATE, if any.
    source_name : str, optional
        Named in error messages (e.g. the file).
    annulus_count : int
        Number of equally wide annuli of the radial profile.
    maximum_uncertainty_fraction : float
        Largest accepted ratio of the fitted sky's 1σ error to the cluster's fitted light at the frame's
        edge, or at `reference_radius_arcsec` where that is nearer the centre.
    reference_radius_arcsec : float, optional
        The radius out to which the sky-subtracted light is used (π-DOC's frame reaches 20″). An
        image much wider than that may have no cluster light left at its own edge, where the sky is
        best determined; what matters is the sky's error against the light that will be used.

    Returns
    -------
    SkyEstimate
        ``method`` is "user value", "user region", "header keyword <NAME>" or "profile fit".

    Raises
    ------
    ValueError
        An invalid image, centre, pixel scale, value or region; `SkyUndeterminedError` (a ValueError)
        where the profile fit does not determine the sky (e.g. a frame inside the cluster's core).
    """
    headers = list(header) if isinstance(header, (list, tuple)) else [header]
    if background is not None:
        if not _is_finite_number(background):
            raise ValueError(f"background = {background!r} is not a finite number")
        return SkyEstimate(float(background), 0.0, "user value", "sky level given by the user"
                           + (" (background_region ignored)" if background_region is not None else ""))
    data = np.ma.filled(np.ma.asarray(image, dtype=float), np.nan)
    if data.ndim != 2:
        raise ValueError(f"image has shape {data.shape}; a 2-D image is needed")
    saturation_level = _header_value(headers, "SATURATE") if saturation_level is None else saturation_level
    valid = np.isfinite(data) & (data < float(saturation_level) if saturation_level is not None else True)
    if not valid.any():
        raise ValueError(f"image ({source_name or 'array'}) holds no finite, unsaturated pixel")
    if not (_is_finite_number(pixel_scale_arcsec) and float(pixel_scale_arcsec) > 0):
        raise ValueError(f"pixel_scale_arcsec = {pixel_scale_arcsec!r} must be a positive number")
    centre = np.asarray(centre_xy_pixels, dtype=float).ravel()
    rows, columns = data.shape
    if centre.shape != (2,) or not (-0.5 <= centre[0] <= columns - 0.5 and -0.5 <= centre[1] <= rows - 0.5):
        raise ValueError(f"centre_xy_pixels = {tuple(centre.tolist())} lies outside the {columns}×{rows} image")

    if background_region is not None:
        pixels, description = _region_pixels(data, valid, background_region)
        level, error = _robust_level(pixels)
        return SkyEstimate(level, error, "user region", (
            f"{CLIP_SIGMA:g}σ-clipped mean of {pixels.size} pixels in the user's {description}; the error is "
            "statistical and assumes the region holds no cluster light"))
    from_header, header_hint = _sky_from_header(headers)
    if from_header is not None:
        return from_header

    radius_samples_pixels, level, level_error = radial_profile(data, valid, centre, annulus_count)
    if level.size < MINIMUM_ANNULI:
        raise SkyUndeterminedError(_what_is_needed(
            source_name, f"only {level.size} annuli of ≥ {MINIMUM_ANNULUS_PIXELS} valid pixels, too few for a profile fit"))
    radius_samples_arcsec = radius_samples_pixels * float(pixel_scale_arcsec)
    fit = fit_profile_sky(radius_samples_arcsec, level, level_error)
    log_half_light, concentration, truncation = fit["parameters"]
    edge_arcsec = radius_samples_arcsec.mean(axis=1).max()
    judged_at_arcsec = edge_arcsec if reference_radius_arcsec is None else min(edge_arcsec, float(reference_radius_arcsec))
    edge_light = fit["amplitude"] * float(_shape(fit["parameters"], np.array([[judged_at_arcsec]]))[0])
    sky, uncertainty = float(fit["sky"]), float(fit["sky_error"])
    fraction = uncertainty / edge_light if edge_light > 0 else np.inf
    summary = (f"limepy W0 = {concentration:.2f}, g = {truncation:.2f}, half-light radius {10 ** log_half_light:.3g}″ "
               f"(frame edge at {edge_arcsec:.3g}″ = {edge_arcsec / 10 ** log_half_light:.2g} r_h)")
    hint = f"; {header_hint}" if header_hint else ""
    if not fraction <= maximum_uncertainty_fraction:
        how_sure = (f"an uncertainty of {fraction:.0%} of the cluster's fitted light at {judged_at_arcsec:.3g}″ (at most "
                    f"{maximum_uncertainty_fraction:.0%} is accepted)" if np.isfinite(fraction)
                    else "with no cluster light left at the frame's edge")
        raise SkyUndeterminedError(_what_is_needed(
            source_name, f"a fit of {summary} leaves the sky at {sky:.4g} ± {uncertainty:.2g}, {how_sure}{hint}"))
    observed_edge = float(level[-1])
    share = f"{sky / observed_edge:.1%} of" if observed_edge > 0 else "against"
    return SkyEstimate(sky, uncertainty, "profile fit", (
        f"fit of {summary} plus a constant to the {level.size}-annulus profile: sky {sky:.4g} ± {uncertainty:.2g} "
        f"(1σ, all five parameters free), {share} the observed level at the frame's edge ({observed_edge:.4g}); "
        f"the sky's uncertainty is {fraction:.1%} of the cluster's fitted light at {judged_at_arcsec:.3g}″, "
        f"{edge_light:.4g}{hint}"))


# The pixel noise is read where the image is faintest: there the sky's noise dominates, few stars
# fall, and the noise is largest against the light (π-DOC's reading is most sensitive there,
# scripts/noise_tolerance.py). A quarter of the image leaves tens of thousands of pixels on a chip.
NOISE_FAINTEST_FRACTION = 0.25
NOISE_SMOOTHING_PIXELS = 9
# A second difference x_i − (x_{i−1} + x_{i+1}) / 2 of white noise has a variance 1.5 σ² and no
# contribution from a linear gradient of the light.
SECOND_DIFFERENCE_VARIANCE_FACTOR = 1.5


def estimate_pixel_noise(image, minimum_pixels=MINIMUM_REGION_PIXELS):
    """1σ noise of one pixel of an image, from its pixel-to-pixel scatter where it is faintest.

    The scatter is the median absolute deviation of the second differences along rows, taken over
    the `NOISE_FAINTEST_FRACTION` of the pixels whose smoothed level is lowest; stars, cosmic rays
    and the cluster's own gradients barely move a median. It assumes that neighbouring pixels'
    noise is independent: a drizzled image, whose resampling correlates the noise of neighbours,
    reads lower than its noise at the scales of a few pixels.

    Parameters
    ----------
    image : numpy.ndarray
        2-D image, linear in flux (any units); NaN where there are no data.
    minimum_pixels : int
        Fewest usable second differences.

    Returns
    -------
    float
        The 1σ noise per pixel, in the image's units.

    Raises
    ------
    ValueError
        For an image that is not 2-D or has too few usable pixels.
    """
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(f"the image must be 2-D to estimate its pixel noise; got shape {image.shape}")
    valid = np.isfinite(image)
    filled = np.where(valid, image, 0.0)
    weight = scipy.ndimage.uniform_filter(valid.astype(np.float64), NOISE_SMOOTHING_PIXELS)
    level = scipy.ndimage.uniform_filter(filled, NOISE_SMOOTHING_PIXELS) / np.maximum(weight, 1e-12)
    second_difference = image[:, 1:-1] - 0.5 * (image[:, :-2] + image[:, 2:])
    usable = np.isfinite(second_difference)
    if usable.sum() < minimum_pixels:
        raise ValueError(f"only {int(usable.sum())} usable pixels to estimate the pixel noise (minimum {minimum_pixels})")
    centre_level = level[:, 1:-1]
    faintest = usable & (centre_level <= np.quantile(centre_level[usable], NOISE_FAINTEST_FRACTION))
    return float(mad_std(second_difference[faintest]) / np.sqrt(SECOND_DIFFERENCE_VARIANCE_FACTOR))
