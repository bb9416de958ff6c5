"""Whole photos in, restored photos out: detect every face, align it, restore it with DPI (real mode), paste it back.

    python sample.py --config configs/photo.py --config.input_dir=photos/ --config.upscale=2

See dpi_jax/photo/pipeline.py for the outputs (<name>.png, <name>_compare.png, <name>_face<i>_lr.png,
<name>_face<i>.png). By default this runs on the bundled demo weights (weights/demo/, no download): a 64x64 prior
trained on procedural faces with an x8 CRT, so each face is shrunk to an 8x8 LR crop and restored at 64x64. That is a
demonstration of the pipeline (detection, alignment, batching, paste-back), not of restoration quality: the demo
prior has never seen a real face. For real restorations select the FFHQ 256x256 models, e.g.

    python sample.py --config configs/photo.py --config.input_dir=photos/ \\
        --config.prior_checkpoint=checkpoints/ffhq_10m --config.crt_checkpoint=checkpoints/crt_real \\
        --config.scale=8 --config.dpi.var_type=learned_range --config.diffusion.respacing='' \\
        --config.dpi.tau=500 --config.dpi.s=1.0 --config.dpi.omega=1000

(the settings of configs/paper.py:real; each face then becomes a 32x32 LR crop restored at 256x256).
"""

from configs import default, demo

# Taken from configs/demo.py, so that the photo demo always samples like the bundled demo.
DEMO_FIELDS = ("prior_checkpoint", "crt_checkpoint", "scale", "dpi", "diffusion")


def get_config():
    config = default.get_config()
    config.mode = "photo"
    config.input_dir = "photos"
    config.output_dir = "out/photo"
    demo_config = demo.get_config()  # the demo models (64x64 prior, x8 CRT) and their settings
    for name in DEMO_FIELDS:
        config[name] = demo_config[name]  # whole sections: the demo's DPI settings and schedule
    config.num_seeds = 1  # seed 0 is pasted back; every seed's crop is written
    config.batch_size = 8  # faces restored at once (all photos' faces are batched together)
    # Photo.
    config.upscale = 2.0  # output size / photo size
    config.background_upsampler = "lanczos"  # or "bicubic": dpi_jax.photo.paste.BACKGROUND_UPSAMPLERS
    config.min_face_size = 20.0  # faces whose detected box is smaller (pixels of the photo) are skipped
    config.max_faces = 0  # per photo, left to right; 0: all
    config.face_threshold = 0.9  # minimum detector score (MTCNN O-Net); real faces score > 0.99
    config.detect_max_side = 1280  # detection runs on the photo shrunk to at most this long side
    config.mask_erode = 0.05  # paste-back mask: eroded by this fraction of the crop side ...
    config.mask_blur = 0.025  # ... then blurred by a Gaussian of this fraction of the crop side
    return config
