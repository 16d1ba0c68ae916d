"""Physical quantities of π-DOC's maps: luminosity, mass-to-light ratios, centres and radii.

Units: log10 flux per pixel in L☉ kpc⁻² with F = L_V / (4π D²) and D in kpc; log10 mass per pixel
in M☉; maps of 160×160 pixels of 0.25″ (`pidoc.frame`). These are beyond the authors' public code;
CB21's abstract quotes the global M/L_V to 12 %.
"""
import numpy as np

from pidoc.frame import MAP_PIXELS, PIXEL_SCALE_ARCSEC


def assign_bins(values, bin_edges):
    """Index of the bin holding each value, or −1 outside the bins.

    Bin i is the half-open interval [edge_i, edge_{i+1}), as in the authors' code; a value equal to
    the last edge, below the first edge, or not finite belongs to no bin.
    """
    values = np.asarray(values, dtype=np.float64)
    bin_edges = np.asarray(bin_edges, dtype=np.float64)
    index = np.searchsorted(bin_edges, values, side="right") - 1
    outside = ~np.isfinite(values) | (values < bin_edges[0]) | (values >= bin_edges[-1])
    index[outside] = -1
    return index


def total_log_mass(log_mass_maps):
    """log10 of the total mass in each map, log10 Σ 10^pixel (CB21 Fig. 6); shape (N,)."""
    log_mass_maps = np.asarray(log_mass_maps, dtype=np.float64)
    return np.log10(np.sum(10.0**log_mass_maps.reshape(len(log_mass_maps), -1), axis=1))


def luminosity_maps_lsun(log_flux_maps, distance_kpc):
    """V-band luminosity per pixel, L = F · 4π D² in L☉, from log10 F (L☉ kpc⁻²) and D (kpc) per map.

    A distance that is not positive (the CNN's output is unconstrained) gives NaN maps.
    """
    log_flux_maps = np.asarray(log_flux_maps, dtype=np.float64)
    distance_kpc = np.asarray(distance_kpc, dtype=np.float64).reshape((-1,) + (1,) * (log_flux_maps.ndim - 1))
    with np.errstate(invalid="ignore"):
        area_factor_kpc2 = np.where(distance_kpc > 0, 4.0 * np.pi * distance_kpc**2, np.nan)
    return 10.0**log_flux_maps * area_factor_kpc2


def positive_log10(values):
    """log10 of positive values; NaN (not an error) for zero, negative or non-finite ones."""
    values = np.asarray(values, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.isfinite(values) & (values > 0), np.log10(np.where(values > 0, values, 1.0)), np.nan)


def scalar_variables(log_flux_maps, log_mass_maps, distance_age):
    """The four map-level quantities, in the variables the intervals and the domain verdict use.

    Parameters
    ----------
    log_flux_maps, log_mass_maps : numpy.ndarray, (N, 160, 160, 1)
    distance_age : numpy.ndarray, (N, 2), [distance kpc, age Gyr]

    Returns
    -------
    dict of numpy.ndarray, (N,)
        "distance": log10 D; "age": Gyr; "total_mass": log10 M_tot in the field; "mass_to_light":
        log10 of M_tot / L_tot with L = F · 4π D² and the D given. NaN where D ≤ 0.
    """
    distance_age = np.asarray(distance_age, dtype=np.float64)
    distance_kpc = distance_age[:, 0]
    luminosity_lsun = luminosity_maps_lsun(log_flux_maps, distance_kpc)
    return {
        "distance": positive_log10(distance_kpc),
        "age": distance_age[:, 1],
        "total_mass": total_log_mass(log_mass_maps),
        "mass_to_light": positive_log10(global_mass_to_light(log_mass_maps, luminosity_lsun)),
    }


def light_weighted_centre_pixels(log_flux_map):
    """Light-weighted centre (row, column) of one flux map, in pixel units (the flux fixes it, not D)."""
    flux = 10.0 ** np.asarray(log_flux_map, dtype=np.float64).reshape(MAP_PIXELS, MAP_PIXELS)
    rows, columns = np.indices(flux.shape)
    return float(np.sum(flux * rows) / flux.sum()), float(np.sum(flux * columns) / flux.sum())


def radius_map_arcsec(centre_pixels):
    """Distance of every pixel centre from `centre_pixels` (row, column), in arcsec."""
    rows, columns = np.indices((MAP_PIXELS, MAP_PIXELS))
    return np.hypot(rows - centre_pixels[0], columns - centre_pixels[1]) * PIXEL_SCALE_ARCSEC


def mass_to_light_profile(log_mass_map, luminosity_map_lsun, centre_pixels, radius_edges_arcsec):
    """M/L_V in annuli: Σ mass / Σ luminosity over the pixels whose centres fall in each annulus.

    Annulus k holds radii in [edge_k, edge_{k+1}). Annuli without light give NaN.
    """
    mass_msun = 10.0 ** np.asarray(log_mass_map, dtype=np.float64).reshape(MAP_PIXELS, MAP_PIXELS)
    luminosity_lsun = np.asarray(luminosity_map_lsun, dtype=np.float64).reshape(MAP_PIXELS, MAP_PIXELS)
    annulus_index = assign_bins(radius_map_arcsec(centre_pixels), radius_edges_arcsec)
    inside = annulus_index >= 0
    number_of_annuli = len(radius_edges_arcsec) - 1
    mass_per_annulus = np.bincount(annulus_index[inside], weights=mass_msun[inside], minlength=number_of_annuli)
    light_per_annulus = np.bincount(annulus_index[inside], weights=luminosity_lsun[inside], minlength=number_of_annuli)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(light_per_annulus > 0, mass_per_annulus / light_per_annulus, np.nan)


def global_mass_to_light(log_mass_maps, luminosity_maps_lsun):
    """Global M/L_V of each map: total mass over total luminosity in the field; shape (N,)."""
    log_mass_maps = np.asarray(log_mass_maps, dtype=np.float64)
    number_of_maps = len(log_mass_maps)
    mass_msun = np.sum(10.0**log_mass_maps.reshape(number_of_maps, -1), axis=1)
    luminosity_lsun = np.sum(np.asarray(luminosity_maps_lsun, dtype=np.float64).reshape(number_of_maps, -1), axis=1)
    return mass_msun / luminosity_lsun

