"""The measures DPI is judged by: pixel metrics (PSNR, SSIM, LR consistency, diversity) and the network metrics of
the paper's tables (LPIPS, FID, IS, face-recognition ACC/CS, MUSIQ, CLIP-IQA), each following the implementation the
field's numbers come from, with weights the user supplies, ported once (``python -m dpi_jax.port``)."""
