"""π-DOC on an observed image: FITS + WCS in; π-DOC's input map, mass map, distance and age out.

    python3 piDOC_observation.py [IMAGE.fits] [--ra DEG --dec DEG] [--hdu N_OR_NAME]
        [--zeropoint-vega MAG] [--ebv MAG] [--psf-fwhm-arcsec X] [--background VALUE] [--units UNIT]
        [--trained-directory DIR] [--output-directory DIR]

With no image it runs on the shipped example, `examples/synthetic_hst_cluster.fits` (a held-out mock
cluster observed as by HST; `scripts/make_synthetic_observation.py`), and writes to
`predictions/observation_example/`. The chain from image to map is `pidoc/observations.py`; the formulas
and their sources are in docs/observations.md. The settings below are the defaults of the flags.

Outputs, in the output folder (each written to a temporary name, then renamed):
    piDOC_input_map.npy, piDOC_input_map.fits   π-DOC's input, (1, 160, 160, 1) and as FITS with its WCS
    predictionM.npy, predictiondistance_age.npy  π-DOC's mass map and [distance kpc, age Gyr]
    predictions_summary.csv, predictions_summary.txt   distance, age, total mass, M/L_V (with intervals
                                                 where the model folder is calibrated) and the domain verdict
    observation_report.txt                       how the image was calibrated, centred and resampled
    observation_summary.png                      image cutout, input map, predicted mass map, M/L_V profile
"""
import argparse
import sys
from pathlib import Path

import numpy as np

import functions
from pidoc import observations, quantities
from pidoc.calibration import uncertainty
from pidoc.frame import MAP_HALF_WIDTH_ARCSEC, MAP_PIXELS
from pidoc.io import check_flux_maps, save_figure, write_table
from pidoc.model import open_model

PROJECT_DIRECTORY = Path(__file__).resolve().parent
# --- Settings: the defaults of the command-line flags ----------------------------------------------
IMAGE_PATH = PROJECT_DIRECTORY / "examples" / "synthetic_hst_cluster.fits"   # positional IMAGE.fits
EXAMPLE_OUTPUT_DIRECTORY = PROJECT_DIRECTORY / "predictions" / "observation_example"
RA_DEG = None                # --ra: cluster centre (ICRS deg); None = light-weighted centre of the image
DEC_DEG = None               # --dec
HDU = None                   # --hdu: index or EXTNAME; None = first 2-D image HDU
ZEROPOINT_VEGA_MAG = None    # --zeropoint-vega: V mag of 1 data unit/s; None = from PHOTFLAM/PHOTPLAM
EBV_MAG = 0.0                # --ebv: E(B−V), A_V = 3.1 E(B−V)
PSF_FWHM_ARCSEC = None       # --psf-fwhm-arcsec: None = per-instrument default (HST only)
BACKGROUND = None            # --background: sky in data units; None = header MDRIZSKY, else estimated
UNITS = None                 # --units: overrides BUNIT (counts, counts/s, mag/arcsec2)
GENERAL_TRAINED_DIRECTORY = PROJECT_DIRECTORY / "trained_piDOC" / "general"
TRAINED_DIRECTORY = None     # --trained-directory: None = trained_piDOC/general if complete, else trained_piDOC
OUTPUT_DIRECTORY = None      # --output-directory: None = predictions/observation_<image name>
STANDARDIZATION_DIRECTORY = PROJECT_DIRECTORY / "input_files"  # holds standardization_files/

INPUT_MAP_FILE = "piDOC_input_map.npy"
REPORT_FILE = "observation_report.txt"
FIGURE_FILE = "observation_summary.png"


def has_networks(directory):
    """True when `directory` holds both a CED and a CNN weight file."""
    directory = Path(directory)
    return directory.is_dir() and any(directory.glob("CED*.h5")) and any(directory.glob("CNN*.h5"))


def default_trained_directory():
    """trained_piDOC/general when it holds CED and CNN files, else trained_piDOC."""
    return GENERAL_TRAINED_DIRECTORY if has_networks(GENERAL_TRAINED_DIRECTORY) else PROJECT_DIRECTORY / "trained_piDOC"


def parse_arguments(argv=None):
    """The command line; every default is the setting of the same name at the top of this file."""
    parser = argparse.ArgumentParser(description="Run π-DOC on a FITS image of a globular cluster (docs/observations.md).")
    parser.add_argument("image", nargs="?", default=None, help="FITS image; default: the shipped synthetic HST example")
    parser.add_argument("--ra", type=float, default=RA_DEG, help="centre RA, ICRS degrees (default: light-weighted centre)")
    parser.add_argument("--dec", type=float, default=DEC_DEG, help="centre Dec, ICRS degrees")
    parser.add_argument("--hdu", default=HDU, help="image HDU, index or EXTNAME (default: first 2-D image)")
    parser.add_argument("--zeropoint-vega", type=float, default=ZEROPOINT_VEGA_MAG,
                        help="Johnson V (Vega) magnitude of 1 data unit per second (default: from PHOTFLAM/PHOTPLAM)")
    parser.add_argument("--ebv", type=float, default=EBV_MAG, help="E(B-V) in mag; A_V = 3.1 E(B-V) (default 0)")
    parser.add_argument("--psf-fwhm-arcsec", type=float, default=PSF_FWHM_ARCSEC,
                        help="FWHM of the image PSF in arcsec (default: per instrument; must be <= 2.5)")
    parser.add_argument("--background", type=float, default=BACKGROUND,
                        help="sky level in the image's data units (default: header MDRIZSKY, else estimated beyond 20\")")
    parser.add_argument("--units", choices=observations.UNIT_CHOICES, default=UNITS, help="override BUNIT")
    parser.add_argument("--trained-directory", default=TRAINED_DIRECTORY,
                        help="model folder (default: trained_piDOC/general if present, else trained_piDOC)")
    parser.add_argument("--output-directory", default=OUTPUT_DIRECTORY,
                        help="output folder (default: predictions/observation_<image name>)")
    return parser.parse_args(argv)


def summarize_predictions(model, output_directory, log_flux_maps, predicted_log_mass_maps,
                          predicted_distance_age, map_names, extra_domain_reasons):
    """Intervals and the domain verdict (`pidoc/calibration/uncertainty.py`), written beside the predictions.

    A model folder without `calibration.json` gives point values and the verdict `unchecked` (or
    `outside`, for a physical limit or a reason of the image pipeline).
    """
    rows, pixel_bounds = uncertainty.summarize(model, log_flux_maps, predicted_log_mass_maps, predicted_distance_age,
                                               map_names=map_names, extra_domain_reasons=extra_domain_reasons)
    uncertainty.write_prediction_summary(output_directory, rows, pixel_bounds)
    return rows


def plot_observation(path, result, log_flux_map, predicted_log_mass_map, distance_kpc):
    """One figure: image cutout with the frame, π-DOC's input map, predicted mass map, M/L_V profile."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import AsinhNorm

    figure, axes = plt.subplots(1, 4, figsize=(18, 4.6))
    cutout_flux = result["cutout"]["flux"]
    cutout_wcs = result["cutout"]["wcs"]
    finite = cutout_flux[np.isfinite(cutout_flux)]
    scale = np.percentile(finite, 99.5) if finite.size else 1.0
    axes[0].imshow(cutout_flux, origin="lower", cmap="gray_r",
                   norm=AsinhNorm(linear_width=max(scale, 1e-30) / 100.0, vmin=0.0, vmax=max(scale, 1e-30)))
    corners = np.array([[-0.5, -0.5], [159.5, -0.5], [159.5, 159.5], [-0.5, 159.5], [-0.5, -0.5]])
    corner_world = result["frame_wcs"].pixel_to_world(corners[:, 0], corners[:, 1])
    corner_x, corner_y = cutout_wcs.world_to_pixel(corner_world)
    axes[0].plot(corner_x, corner_y, color="tab:red", lw=1.2)
    axes[0].set_title("image (sky-subtracted) and π-DOC's frame")
    axes[0].set_xticks([])
    axes[0].set_yticks([])
    extent = [-MAP_HALF_WIDTH_ARCSEC, MAP_HALF_WIDTH_ARCSEC] * 2
    image = axes[1].imshow(log_flux_map, origin="lower", extent=extent, vmin=functions.FLUX_COLOUR_RANGE_LOG[0] - 1,
                           vmax=max(functions.FLUX_COLOUR_RANGE_LOG[1], float(log_flux_map.max())), cmap="magma")
    figure.colorbar(image, ax=axes[1], label=functions.FLUX_LABEL)
    axes[1].set_title(f"π-DOC input ({100 * result['covered_fraction']:.0f} % covered)")
    image = axes[2].imshow(predicted_log_mass_map, origin="lower", extent=extent, cmap="viridis",
                           vmin=functions.MASS_COLOUR_RANGE_LOG_MSUN[0], vmax=max(functions.MASS_COLOUR_RANGE_LOG_MSUN[1], float(predicted_log_mass_map.max())))
    figure.colorbar(image, ax=axes[2], label=functions.MASS_LABEL)
    axes[2].set_title("predicted mass map")
    for axis in axes[1:3]:
        axis.set_xlabel("Δx (″)")
        axis.set_ylabel("Δy (″)")
    edges = functions.MASS_TO_LIGHT_RADIUS_EDGES_ARCSEC
    luminosity = quantities.luminosity_maps_lsun(log_flux_map[None], [distance_kpc])[0]
    centre_pixels = (0.5 * MAP_PIXELS - 0.5, 0.5 * MAP_PIXELS - 0.5)
    profile = quantities.mass_to_light_profile(predicted_log_mass_map, luminosity, centre_pixels, edges)
    axes[3].step(functions.bin_centres(edges), profile, where="mid", color="tab:blue")
    axes[3].set_xlabel("R (″) from the centre")
    axes[3].set_ylabel("M/L_V (M☉/L☉)")
    axes[3].set_title(f"M/L_V profile at D = {distance_kpc:.1f} kpc (π-DOC)")
    figure.suptitle(f"π-DOC on {result['source_path'].name}", y=1.0)
    figure.tight_layout()
    return save_figure(figure, path, dpi=110, bbox_inches="tight")


def main(argv=None):
    """Run the whole chain; returns a dict with the map, π-DOC's outputs and the summary rows."""
    arguments = parse_arguments(argv)
    image_path = Path(arguments.image) if arguments.image is not None else IMAGE_PATH
    if arguments.output_directory is not None:
        output_directory = Path(arguments.output_directory)
    elif arguments.image is None:
        output_directory = EXAMPLE_OUTPUT_DIRECTORY
    else:
        output_directory = PROJECT_DIRECTORY / "predictions" / f"observation_{image_path.stem}"
    trained_directory = Path(arguments.trained_directory) if arguments.trained_directory else default_trained_directory()
    print(f"image: {image_path}" + ("  (the shipped example; pass IMAGE.fits for your own)" if arguments.image is None else ""))
    print(f"model folder: {trained_directory}")

    # Everything that can fail on the input runs before anything is written.
    result = observations.image_to_pidoc_map(
        image_path, ra_deg=arguments.ra, dec_deg=arguments.dec, hdu=arguments.hdu,
        zeropoint_vega=arguments.zeropoint_vega, ebv=arguments.ebv, psf_fwhm_arcsec=arguments.psf_fwhm_arcsec,
        background=arguments.background, units=arguments.units)
    log_flux_maps = check_flux_maps(result["log_flux_map"])
    observations.input_map_header(result)  # a header that cannot be written fails here, before any output
    model = open_model(trained_directory, STANDARDIZATION_DIRECTORY / functions.STANDARDIZATION_SUBDIRECTORY)
    predicted_log_mass_maps, predicted_distance_age = functions.make_predictions(
        model, STANDARDIZATION_DIRECTORY, output_directory, log_flux_maps)

    observations.write_input_map(output_directory, result)
    write_table(output_directory / REPORT_FILE, result["report"], headers=("step", "value"), disable_numparse=True)
    map_name = image_path.stem
    reasons = ["; ".join(result["domain_reasons"]) or None]
    rows = summarize_predictions(model, output_directory, log_flux_maps, predicted_log_mass_maps,
                                 predicted_distance_age, [map_name], reasons)
    plot_observation(output_directory / FIGURE_FILE, result, log_flux_maps[0, ..., 0], predicted_log_mass_maps[0, ..., 0],
                     float(predicted_distance_age[0, 0]))

    row = rows[0]
    print(f"\nπ-DOC on {image_path.name}: distance {row['distance_kpc']:.1f} kpc, age {row['age_gyr']:.1f} Gyr, "
          f"log10 M_tot {row['log_total_mass_msun']:.2f} M☉, M/L_V {row['mass_to_light_v']:.2f}")
    print(f"frame coverage {100 * result['covered_fraction']:.1f} %; domain verdict: {row['domain']}"
          + (f" ({row['domain_reason']})" if row.get("domain_reason") else ""))
    print(f"outputs in {output_directory}")
    return {"result": result, "log_flux_maps": log_flux_maps, "predicted_log_mass_maps": predicted_log_mass_maps,
            "predicted_distance_age": predicted_distance_age, "rows": rows, "output_directory": output_directory}


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
