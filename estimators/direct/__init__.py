r"""Stage direct: estimators that do not go through log q(z) -- moment-based estimators and bounds
(:mod:`.moments`) and the density-ratio (discriminator) TC of FactorVAE (:mod:`.density_ratio`), with their
registry (:mod:`.registry`). See docs/maths.md, "Density-ratio and moment-based estimators".
"""
from .density_ratio import DensityRatioResult, density_ratio_tc, permute_dims
from .moments import (gaussian_tc, gaussian_tc_of_means, moment_dimwise_kl, moment_kl, moment_matched,
                      moment_mi_upper, moment_tc)
from .registry import DIRECT_ESTIMATORS, DIRECT_FAMILIES, DirectEstimatorInfo

__all__ = ["gaussian_tc", "gaussian_tc_of_means", "moment_dimwise_kl", "moment_kl", "moment_matched",
           "moment_mi_upper", "moment_tc", "density_ratio_tc", "DensityRatioResult", "permute_dims",
           "DIRECT_ESTIMATORS", "DIRECT_FAMILIES", "DirectEstimatorInfo"]
