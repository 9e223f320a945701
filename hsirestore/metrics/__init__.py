"""Metrics (numpy) and report writers; conventions in :data:`CONVENTIONS`."""
from hsirestore.metrics.core import (CONVENTIONS, compute_metrics, ergas, mpsnr, mrae, mssim,  # noqa: F401
                                     psnr_global, psnr_per_band, rmse, rmse_per_band, sam_deg,
                                     ssim_per_band)
from hsirestore.metrics.report import format_value, report_paths, write_report  # noqa: F401
from hsirestore.metrics.compare import compare_cubes  # noqa: F401,E402
