"""π-DOC on observed images: FITS + WCS in; π-DOC's input map, mass map, distance and age out.

    python3 piDOC_observation.py [IMAGE.fits ...] [--ra DEG --dec DEG] [--hdu N_OR_NAME ... | --all-hdus]
        [--zeropoint-vega MAG ...] [--ebv MAG] [--psf-fwhm-arcsec X ...] [--psf-fwhm-relative-error F] [--units UNIT ...]
        [--background VALUE ... | --background-region X0 X1 Y0 Y1 ... | --background-outside-arcsec R]
        [--trained-directory DIR] [--output-directory DIR]
    python3 piDOC_observation.py --catalogue clusters.csv [--workers N | --scheduler ADDRESS] [--no-figures]
        [--trained-directory DIR] [--output-directory DIR]

With no image it runs on the shipped example, `examples/synthetic_hst_cluster.fits` (a held-out mock
cluster observed as by HST; `scripts/make_synthetic_observation.py`), and writes to
`predictions/observation_example/`. The chain from image to map is `pidoc/observations.py`; the formulas
and their sources are in docs/observations.md. The settings below are the defaults of the flags.

Several images (files, or HDUs of one file with `--hdu 1 2 3` or `--all-hdus`) of one cluster are
combined onto π-DOC's frame: each calibrated on its own, then resampled flux-conserving onto one grid,
averaged where they overlap. Settings given once apply to every image; `--zeropoint-vega`,
`--psf-fwhm-arcsec`, `--units` and `--background` also take one value per image, and
`--background-region` one box per image.

With `--catalogue` (`pidoc/catalogue.py` describes its columns) every row is a cluster: the images
become maps on dask workers (a LocalCluster of `--workers` processes, or the workers of
`--scheduler`; one worker: in this process), π-DOC runs once on all the maps here, each cluster gets
`<output>/<name>/` with the files below, and `<output>/catalogue_summary.csv` and `.txt` hold one
line per row, answered or refused with its reason.

Outputs, in the output folder (each written to a temporary name, then renamed):
    piDOC_input_map.npy, piDOC_input_map.fits   π-DOC's input, (1, 160, 160, 1) and as FITS with its WCS
    predictionM.npy, predictiondistance_age.npy  π-DOC's mass map and [distance kpc, age Gyr]
    predictions_summary.csv, predictions_summary.txt   distance, age, total mass, M/L_V (with intervals
                                                 where the model folder is calibrated) and the domain verdict
    predictionM_intervals.npy                    per-pixel log10 M bounds (lo95, lo68, median, hi68, hi95), if calibrated
    observation_report.txt                       how the image was calibrated, its sky set (and how sure), centred and resampled
    observation_summary.png                      image, input map, mass map, M/L_V and enclosed-mass profiles with 68 % bands
"""
import argparse
import sys
from pathlib import Path

import numpy as np

import functions
from pidoc import catalogue, observations, quantities
from pidoc.calibration import uncertainty
from pidoc.frame import MAP_HALF_WIDTH_ARCSEC, MAP_PIXELS
from pidoc.io import check_flux_maps, save_array, save_figure, write_table
from pidoc.model import open_model

PROJECT_DIRECTORY = Path(__file__).resolve().parent
# --- Settings: the defaults of the command-line flags ----------------------------------------------
IMAGE_PATH = PROJECT_DIRECTORY / "examples" / "synthetic_hst_cluster.fits"   # positional IMAGE.fits
EXAMPLE_OUTPUT_DIRECTORY = PROJECT_DIRECTORY / "predictions" / "observation_example"
# The shipped example is a 70″ image of a compact mock cluster made with a known flat sky
# (scripts/make_synthetic_observation.py): beyond 20″ of the centre it holds sky and the cluster's
# faint outskirts only, so its sky is taken there, as it always was (22.711 e⁻ per pixel against the
# true 22.615). The profile fit alone gives 22.66 ± 0.15 but declines to decide: its test compares the
# uncertainty with the cluster's light at the image's corners, 55″ out, where this compact cluster has
# none (docs/observations.md, §3).
EXAMPLE_BACKGROUND_OUTSIDE_ARCSEC = 20.0
RA_DEG = None                # --ra: cluster centre (ICRS deg); None = light-weighted centre of the (first) image
DEC_DEG = None               # --dec
HDU = None                   # --hdu: index or EXTNAME (one, one per file, or several of one file); None = first 2-D image
ZEROPOINT_VEGA_MAG = None    # --zeropoint-vega: V mag of 1 data unit/s; None = from PHOTFLAM/PHOTPLAM
EBV_MAG = 0.0                # --ebv: E(B−V), A_V = 3.1 E(B−V)
PSF_FWHM_ARCSEC = None       # --psf-fwhm-arcsec: None = per-instrument default (HST only)
PSF_FWHM_RELATIVE_ERROR = observations.PSF_FWHM_RELATIVE_ERROR  # --psf-fwhm-relative-error: how well that FWHM is known
BACKGROUND = None            # --background: sky in data units; None = pidoc.sky.estimate_sky (header, profile fit)
UNITS = None                 # --units: overrides BUNIT (counts, counts/s, mag/arcsec2)
GENERAL_TRAINED_DIRECTORY = PROJECT_DIRECTORY / "trained_piDOC" / "general"
TRAINED_DIRECTORY = None     # --trained-directory: None = trained_piDOC/general if complete, else trained_piDOC
OUTPUT_DIRECTORY = None      # --output-directory: None = predictions/observation_<image name> (catalogue_<name>)
WORKERS = 1                  # --workers: LocalCluster processes of a catalogue; 1 = in this process
SCHEDULER = None             # --scheduler: address of a running dask scheduler; None = a LocalCluster
STANDARDIZATION_DIRECTORY = PROJECT_DIRECTORY / "input_files"  # holds standardization_files/

INPUT_MAP_FILE = "piDOC_input_map.npy"
REPORT_FILE = "observation_report.txt"
FIGURE_FILE = "observation_summary.png"
# Radii of the enclosed-mass profile: 0.5″ steps out to the frame's half width, where a circle still
# lies inside the frame.
ENCLOSED_MASS_RADIUS_EDGES_ARCSEC = np.arange(0.0, MAP_HALF_WIDTH_ARCSEC + 0.25, 0.5)


def has_networks(directory):
    """True when `directory` holds both a CED and a CNN weight file."""
    directory = Path(directory)
    return directory.is_dir() and any(directory.glob("CED*.h5")) and any(directory.glob("CNN*.h5"))


def default_trained_directory():
    """trained_piDOC/general when it holds CED and CNN files, else trained_piDOC."""
    return GENERAL_TRAINED_DIRECTORY if has_networks(GENERAL_TRAINED_DIRECTORY) else PROJECT_DIRECTORY / "trained_piDOC"


def parse_arguments(argv=None):
    """The command line; every default is the setting of the same name at the top of this file."""
    parser = argparse.ArgumentParser(description="Run π-DOC on FITS images of globular clusters (docs/observations.md).")
    parser.add_argument("images", nargs="*", default=[], help="FITS image(s) of one cluster; default: the shipped synthetic HST example")
    parser.add_argument("--ra", type=float, default=RA_DEG, help="centre RA, ICRS degrees (default: light-weighted centre)")
    parser.add_argument("--dec", type=float, default=DEC_DEG, help="centre Dec, ICRS degrees")
    parser.add_argument("--hdu", nargs="+", default=HDU,
                        help="image HDU(s), index or EXTNAME: one for all files, one per file, or several of one file")
    parser.add_argument("--all-hdus", action="store_true", help="every 2-D image HDU of each file (chips of one exposure)")
    parser.add_argument("--zeropoint-vega", type=float, nargs="+", default=ZEROPOINT_VEGA_MAG,
                        help="Johnson V (Vega) magnitude of 1 data unit per second, one or one per image (default: from PHOTFLAM/PHOTPLAM)")
    parser.add_argument("--ebv", type=float, default=EBV_MAG, help="E(B-V) in mag; A_V = 3.1 E(B-V) (default 0)")
    parser.add_argument("--psf-fwhm-arcsec", type=float, nargs="+", default=PSF_FWHM_ARCSEC,
                        help="FWHM of the image PSF in arcsec, one or one per image (default: per instrument; must be <= 2.5)")
    parser.add_argument("--psf-fwhm-relative-error", type=float, default=PSF_FWHM_RELATIVE_ERROR,
                        help="how well the PSF FWHM is known, as a fraction (default %(default)s); a map whose matched "
                             "seeing that error would move by more than observations.SEEING_TOLERANCE_ARCSEC is flagged")
    parser.add_argument("--background", type=float, nargs="+", default=BACKGROUND,
                        help="sky level in the image's data units per pixel, one or one per image (default: header "
                             "keyword or a cluster-profile fit; refused where neither decides)")
    parser.add_argument("--background-region", type=int, nargs="+", default=None, metavar="X0 X1 Y0 Y1",
                        help="a sky-only box per image, 0-based pixel bounds, X1 and Y1 excluded")
    parser.add_argument("--background-outside-arcsec", type=float, default=None, metavar="R",
                        help="the pixels farther than R arcsec from the centre hold only sky (your statement)")
    parser.add_argument("--units", choices=observations.UNIT_CHOICES, nargs="+", default=UNITS, help="override BUNIT (one or one per image)")
    parser.add_argument("--catalogue", default=None, help="CSV of clusters, one per row (pidoc/catalogue.py)")
    parser.add_argument("--workers", type=int, default=WORKERS, help="catalogue: LocalCluster processes; 1: in this process")
    parser.add_argument("--scheduler", default=SCHEDULER, help="catalogue: address of a running dask scheduler to use")
    parser.add_argument("--no-figures", action="store_true", help="catalogue: skip observation_summary.png (faster)")
    parser.add_argument("--trained-directory", default=TRAINED_DIRECTORY,
                        help="model folder (default: trained_piDOC/general if present, else trained_piDOC)")
    parser.add_argument("--output-directory", default=OUTPUT_DIRECTORY,
                        help="output folder (default: predictions/observation_<image name>, or catalogue_<name>)")
    arguments = parser.parse_args(argv)
    if arguments.catalogue is not None and (arguments.images or arguments.hdu or arguments.all_hdus):
        raise ValueError("--catalogue takes its images and HDUs from the catalogue; give no IMAGE or --hdu")
    if arguments.background_region is not None and len(arguments.background_region) % 4:
        raise ValueError(f"--background-region takes four integers (x0 x1 y0 y1) per image, got {len(arguments.background_region)}")
    return arguments


def single_or_list(values):
    """argparse's list of one value as that value (the same for every image), longer lists as they are."""
    if values is None:
        return None
    return values[0] if len(values) == 1 else list(values)


def summarize_predictions(model, output_directory, log_flux_maps, predicted_log_mass_maps,
                          predicted_distance_age, map_names, extra_domain_reasons):
    """Intervals and the domain verdict (`pidoc/calibration/uncertainty.py`), written beside the predictions.

    A model folder without `calibration.json` gives point values and the verdict `unchecked` (or
    `outside`, for a physical limit or a reason of the image pipeline). Returns the rows and the
    per-pixel bounds (None without calibration).
    """
    rows, pixel_bounds = uncertainty.summarize(model, log_flux_maps, predicted_log_mass_maps, predicted_distance_age,
                                               map_names=map_names, extra_domain_reasons=extra_domain_reasons)
    uncertainty.write_prediction_summary(output_directory, rows, pixel_bounds)
    return rows, pixel_bounds


# --- Words for the printed summary: never `nan` ------------------------------------------------------
def quantity_text(row, column, label, unit, digits):
    """'distance 16.0 kpc [68 %: 9.8–16.0]', or the quantity with the reason it is undefined."""
    reasons = uncertainty.undefined_value_reasons(row)
    if column in reasons:
        return f"{label} undefined: {uncertainty.UNDEFINED_REASONS[reasons[column]][0]}"
    text = f"{label} {row[column]:.{digits}f}{unit}"
    interval_reason = reasons.get(f"{column}_lo68") or reasons.get(f"{column}_hi68")
    if interval_reason is not None:
        return text + f" (68 % interval undefined: {uncertainty.UNDEFINED_REASONS[interval_reason][1]})"
    return text + f" [68 %: {row[column + '_lo68']:.{digits}f}–{row[column + '_hi68']:.{digits}f}]"


def summary_lines(name, row, result):
    """The lines printed at the end of a run: the answer with intervals, the sky, coverage and verdict."""
    answer = ", ".join(quantity_text(row, column, label, unit, digits) for column, label, unit, digits in (
        ("distance_kpc", "distance", " kpc", 1), ("age_gyr", "age", " Gyr", 1),
        ("log_total_mass_msun", "log10 M_tot", " M☉", 2), ("mass_to_light_v", "M/L_V", "", 2)))
    lines = [f"π-DOC on {name}: {answer}"]
    sources = result["sources"]
    for index, source in enumerate(sources):
        sky = source["sky"]
        tag = f" [{index + 1}: {Path(source['path']).name}]" if len(sources) > 1 else ""
        certainty = f" ± {sky['uncertainty_text']} (1σ)" if sky["uncertainty_flux_per_pixel"] > 0 else ""
        lines.append(f"sky{tag}: {sky['method']}, {sky['value_text']}{certainty} {sky['units_text']}")
    coverage = f"frame coverage {100 * result['covered_fraction']:.1f} %"
    if len(sources) > 1:
        coverage += " (" + ", ".join(f"{100 * fraction:.1f} % by {count}" for count, fraction in result["coverage_by_image_count"].items()) + ")"
    lines.append(f"{coverage}; domain verdict: {row['domain']}" + (f" ({row['domain_reason']})" if row.get("domain_reason") else ""))
    return lines


# --- The figure ----------------------------------------------------------------------------------------
def enclosed_mass_msun(log_mass_map, radius_edges_arcsec):
    """Mass within each radius of `radius_edges_arcsec[1:]` of the frame centre (M☉), from pixel centres."""
    mass = 10.0 ** np.asarray(log_mass_map, dtype=np.float64).reshape(MAP_PIXELS, MAP_PIXELS)
    radius = quantities.radius_map_arcsec((0.5 * MAP_PIXELS - 0.5, 0.5 * MAP_PIXELS - 0.5))
    return np.array([mass[radius < edge].sum() for edge in radius_edges_arcsec[1:]])


def plot_observation(path, result, log_flux_map, predicted_log_mass_map, distance_kpc, pixel_bounds=None):
    """One figure: the image with the frame, π-DOC's input map, the predicted mass map, and the M/L_V
    and enclosed-mass profiles with their 68 % bands.

    The bands are the profiles of the per-pixel 68 % bounds (`predictionM_intervals.npy`), i.e. with
    every pixel at its bound together: the band of fully correlated pixel errors, wider than that of
    independent ones. They hold the mass at π-DOC's distance; the distance's own uncertainty moves
    M/L_V as 1/D² on top (its interval is in the summary). Without calibration there is no band, and
    the panel says so; for a distance ≤ 0 there is no M/L_V, and the panel says why.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import AsinhNorm

    figure, axes = plt.subplots(1, 5, figsize=(22, 4.6))
    display = result.get("display") or observations.display_cutout(result)
    display_flux = display["flux"]
    finite = display_flux[np.isfinite(display_flux)]
    scale = np.percentile(finite, 99.5) if finite.size else 1.0
    axes[0].imshow(display_flux, origin="lower", cmap="gray_r",
                   norm=AsinhNorm(linear_width=max(scale, 1e-30) / 100.0, vmin=0.0, vmax=max(scale, 1e-30)))
    axes[0].plot(*display["frame_outline_xy"], color="tab:red", lw=1.2)
    number_of_images = len(result.get("sources", [None]))
    axes[0].set_title("image (sky-subtracted) and π-DOC's frame" if number_of_images == 1
                      else f"{number_of_images} images (sky-subtracted, combined) and the frame", fontsize=9)
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

    # Bounds along the last axis of predictionM_intervals.npy: lo95, lo68, median, hi68, hi95.
    band_maps = (pixel_bounds[..., 1], pixel_bounds[..., 3]) if pixel_bounds is not None else None
    no_band = "no 68 % band: the model folder is not calibrated"
    band_label = "68 % band (pixel bounds together)"
    edges = functions.MASS_TO_LIGHT_RADIUS_EDGES_ARCSEC
    centre_pixels = (0.5 * MAP_PIXELS - 0.5, 0.5 * MAP_PIXELS - 0.5)
    axis = axes[3]
    if distance_kpc > 0:
        luminosity = quantities.luminosity_maps_lsun(log_flux_map[None], [distance_kpc])[0]
        profile = quantities.mass_to_light_profile(predicted_log_mass_map, luminosity, centre_pixels, edges)
        radii = functions.bin_centres(edges)
        axis.step(radii, profile, where="mid", color="tab:blue", label="π-DOC")
        if band_maps is not None:
            lower, upper = (quantities.mass_to_light_profile(band, luminosity, centre_pixels, edges) for band in band_maps)
            axis.fill_between(radii, lower, upper, step="mid", color="tab:blue", alpha=0.25, label=band_label)
        else:
            axis.text(0.03, 0.97, no_band, transform=axis.transAxes, va="top", fontsize=7)
        axis.legend(fontsize=7, loc="lower right")
        axis.set_title(f"M/L_V profile at D = {distance_kpc:.1f} kpc (π-DOC)")
    else:
        axis.text(0.5, 0.5, f"M/L_V undefined:\npredicted distance {distance_kpc:.1f} kpc ≤ 0,\nso no luminosity L = 4π D² F",
                  transform=axis.transAxes, ha="center", va="center", fontsize=9, color="tab:red")
        axis.set_title("M/L_V profile")
    axis.set_xlabel("R (″) from the centre")
    axis.set_ylabel("M/L_V (M☉/L☉)")

    axis = axes[4]
    outer_radii = ENCLOSED_MASS_RADIUS_EDGES_ARCSEC[1:]
    axis.plot(outer_radii, enclosed_mass_msun(predicted_log_mass_map, ENCLOSED_MASS_RADIUS_EDGES_ARCSEC), color="tab:green", label="π-DOC")
    if band_maps is not None:
        lower, upper = (enclosed_mass_msun(band, ENCLOSED_MASS_RADIUS_EDGES_ARCSEC) for band in band_maps)
        axis.fill_between(outer_radii, lower, upper, color="tab:green", alpha=0.25, label=band_label)
    else:
        axis.text(0.03, 0.97, no_band, transform=axis.transAxes, va="top", fontsize=7)
    axis.set_yscale("log")
    axis.legend(fontsize=7, loc="lower right")
    axis.set_xlabel("R (″) from the centre")
    axis.set_ylabel("M(< R) (M☉)")
    axis.set_title("enclosed mass (π-DOC)")
    figure.suptitle(f"π-DOC on {result['source_path'].name}" + (f" and {number_of_images - 1} more" if number_of_images > 1 else ""), y=1.0)
    figure.tight_layout()
    return save_figure(figure, path, dpi=110, bbox_inches="tight")


def write_observation_outputs(output_directory, result, model, log_flux_maps, predicted_log_mass_maps,
                              predicted_distance_age, map_name, make_figure=True):
    """Every file of one cluster but π-DOC's own two (the input map, report, summary and figure).

    Returns the summary row.
    """
    observations.write_input_map(output_directory, result)
    write_table(Path(output_directory) / REPORT_FILE, result["report"], headers=("step", "value"), disable_numparse=True)
    reasons = ["; ".join(result["domain_reasons"]) or None]
    rows, pixel_bounds = summarize_predictions(model, output_directory, log_flux_maps, predicted_log_mass_maps,
                                               predicted_distance_age, [map_name], reasons)
    if make_figure:
        plot_observation(Path(output_directory) / FIGURE_FILE, result, log_flux_maps[0, ..., 0], predicted_log_mass_maps[0, ..., 0],
                         float(predicted_distance_age[0, 0]), None if pixel_bounds is None else pixel_bounds[0])
    return rows[0]


def run_images(arguments, trained_directory):
    """One cluster from one or several images."""
    shipped_example = not arguments.images
    image_paths = [Path(image) for image in arguments.images] or [IMAGE_PATH]
    if arguments.output_directory is not None:
        output_directory = Path(arguments.output_directory)
    elif shipped_example:
        output_directory = EXAMPLE_OUTPUT_DIRECTORY
    else:
        suffix = f"_and_{len(image_paths) - 1}_more" if len(image_paths) > 1 else ""
        output_directory = PROJECT_DIRECTORY / "predictions" / f"observation_{image_paths[0].stem}{suffix}"
    print("image" + ("s" if len(image_paths) > 1 else "") + ": " + ", ".join(str(path) for path in image_paths)
          + ("  (the shipped example; pass IMAGE.fits for your own)" if shipped_example else ""))
    print(f"model folder: {trained_directory}")
    background_outside_arcsec = arguments.background_outside_arcsec
    if shipped_example and arguments.background is None and arguments.background_region is None and background_outside_arcsec is None:
        background_outside_arcsec = EXAMPLE_BACKGROUND_OUTSIDE_ARCSEC
    regions = arguments.background_region
    if regions is not None:
        boxes = [tuple(regions[start:start + 4]) for start in range(0, len(regions), 4)]
        regions = boxes[0] if len(boxes) == 1 else boxes

    # Everything that can fail on the input runs before anything is written.
    sources = observations.expand_sources(image_paths, arguments.hdu, arguments.all_hdus)
    result = observations.images_to_pidoc_map(
        sources, ra_deg=arguments.ra, dec_deg=arguments.dec, ebv=arguments.ebv,
        zeropoint_vega=single_or_list(arguments.zeropoint_vega), psf_fwhm_arcsec=single_or_list(arguments.psf_fwhm_arcsec),
        background=single_or_list(arguments.background), background_region=regions,
        background_outside_arcsec=background_outside_arcsec, units=single_or_list(arguments.units),
        psf_fwhm_relative_error=arguments.psf_fwhm_relative_error)
    log_flux_maps = check_flux_maps(result["log_flux_map"])
    observations.input_map_header(result)  # a header that cannot be written fails here, before any output
    model = open_model(trained_directory, STANDARDIZATION_DIRECTORY / functions.STANDARDIZATION_SUBDIRECTORY)
    predicted_log_mass_maps, predicted_distance_age = functions.make_predictions(
        model, STANDARDIZATION_DIRECTORY, output_directory, log_flux_maps)
    map_name = image_paths[0].stem
    row = write_observation_outputs(output_directory, result, model, log_flux_maps, predicted_log_mass_maps,
                                    predicted_distance_age, map_name)
    print("\n" + "\n".join(summary_lines(", ".join(path.name for path in image_paths), row, result)))
    print(f"outputs in {output_directory}")
    return {"result": result, "log_flux_maps": log_flux_maps, "predicted_log_mass_maps": predicted_log_mass_maps,
            "predicted_distance_age": predicted_distance_age, "rows": [row], "output_directory": output_directory}


def run_catalogue(catalogue_path, output_directory, model, workers=WORKERS, scheduler=None, make_figures=True):
    """Every cluster of a catalogue: maps on the workers, π-DOC once here, one folder each and one table.

    Parameters
    ----------
    catalogue_path : str or Path
        The CSV (`pidoc/catalogue.py`).
    output_directory : str or Path
        Gets `<name>/` per answered cluster and `catalogue_summary.csv` / `.txt`.
    model : pidoc.model.TrainedModel
        The opened model folder.
    workers, scheduler :
        The dask engine (`catalogue.prepare_clusters`).
    make_figures : bool
        Write each cluster's `observation_summary.png`.

    Returns
    -------
    list of dict
        The table's rows, in catalogue order.
    """
    output_directory = Path(output_directory)
    entries = catalogue.read_catalogue(catalogue_path)   # a catalogue that cannot be read fails before any output
    print(f"catalogue {catalogue_path}: {len(entries)} clusters; images → maps on "
          + (f"the scheduler {scheduler}" if scheduler else f"{workers} worker{'s' if workers > 1 else ''}"))
    outcomes = catalogue.prepare_clusters(entries, workers=workers, scheduler=scheduler)
    answered = [outcome for outcome in outcomes if outcome["status"] == catalogue.ANSWERED]
    summary_rows = {}
    if answered:
        log_flux_maps = check_flux_maps(np.stack([outcome["result"]["log_flux_map"] for outcome in answered]))
        predicted_log_mass_maps, predicted_distance_age, _ = model.predict(log_flux_maps)
        for position, outcome in enumerate(answered):
            folder = output_directory / outcome["name"]
            folder.mkdir(parents=True, exist_ok=True)
            one = slice(position, position + 1)
            save_array(folder / functions.PREDICTED_MASS_FILE, predicted_log_mass_maps[one])
            save_array(folder / functions.PREDICTED_DISTANCE_AGE_FILE, predicted_distance_age[one])
            summary_rows[outcome["index"]] = write_observation_outputs(
                folder, outcome["result"], model, log_flux_maps[one], predicted_log_mass_maps[one],
                predicted_distance_age[one], outcome["name"], make_figure=make_figures)
    rows = catalogue.catalogue_rows(outcomes, summary_rows)
    paths = catalogue.write_catalogue_table(output_directory, rows)
    print((output_directory / catalogue.CATALOGUE_TEXT_FILE).read_text(encoding="utf-8"))
    print(f"table: {', '.join(str(path) for path in paths)}")
    return rows


def main(argv=None):
    """Run the whole chain; returns a dict with the map, π-DOC's outputs and the summary rows
    (with --catalogue: "rows", the catalogue table's rows, and "output_directory")."""
    arguments = parse_arguments(argv)
    trained_directory = Path(arguments.trained_directory) if arguments.trained_directory else default_trained_directory()
    if arguments.catalogue is None:
        return run_images(arguments, trained_directory)
    catalogue_path = Path(arguments.catalogue)
    output_directory = (Path(arguments.output_directory) if arguments.output_directory is not None
                        else PROJECT_DIRECTORY / "predictions" / f"catalogue_{catalogue_path.stem}")
    catalogue.read_catalogue(catalogue_path)   # fail on an unreadable catalogue before TensorFlow starts
    model = open_model(trained_directory, STANDARDIZATION_DIRECTORY / functions.STANDARDIZATION_SUBDIRECTORY)
    rows = run_catalogue(catalogue_path, output_directory, model, workers=arguments.workers, scheduler=arguments.scheduler,
                         make_figures=not arguments.no_figures)
    return {"rows": rows, "output_directory": output_directory}


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
