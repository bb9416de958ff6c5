"""Training of the CRT and of small priors: not implemented yet (tracked in the training issue).

The CRT checkpoints sample.py loads are those written by ``dpi_jax.checkpoint.save_model``; until train.py lands, a
PyTorch CRT can be converted with ``python -m dpi_jax.port crt.pt checkpoints/crt_x8 --model crt``.
"""

import sys

if __name__ == "__main__":
    sys.exit("train.py is not implemented yet: see the README (training is a separate issue).")
