r"""Stage 8, the gradients: what training sees -- the gradient of every estimator's minibatch estimate against the
exact gradient of the full-data quantity, and what the estimator does to a trained model.

* :mod:`.encoders` -- parametric encoders theta -> (mu_n, logvar_n) on a fixed data set (linear, vae-digits);
* :mod:`.exact` -- the exact gradient (reparameterised Monte Carlo over all N components, with an se) and the
  finite-difference check against the quadrature references;
* :mod:`.study` -- the estimator gradients over R replicate batches and their metrics (bias, cosines, SNR, RMSE);
* :mod:`.runner`, :mod:`.presets`, :mod:`.report` -- the resumable study, its presets, CSV, plot and summary;
* :mod:`.training` -- the digits VAE trained as a beta-TCVAE with each estimator, judged by exact references.

See ``docs/maths.md``, "Gradients: what training sees".
"""
from .encoders import EncoderProblem, digits_problem, linear_problem, make_problem, PROBLEMS
from .exact import ExactGradient, exact_gradient, finite_difference
from .presets import PRESETS, TRAINING_PRESETS, GradientPreset, TrainingPreset
from .runner import run_gradient_study
from .study import estimator_gradients, gradient_metrics
from .training import run_training_study, train_tcvae

__all__ = ["EncoderProblem", "digits_problem", "linear_problem", "make_problem", "PROBLEMS", "ExactGradient",
           "exact_gradient", "finite_difference", "estimator_gradients", "gradient_metrics", "run_gradient_study",
           "run_training_study", "train_tcvae", "PRESETS", "TRAINING_PRESETS", "GradientPreset", "TrainingPreset"]
