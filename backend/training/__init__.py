"""What a training run is made of, as pure logic and data: the training configuration and its presets
(`config`), the catalogs of presets, hardware and known base models (`catalogs`, data in `catalog/`),
base models on this machine (`base_models`, the offline `tiny_model`), the trainer's data pipeline
(`data`), the pre-launch estimate (`estimation`) and the quality rating of a finished run (`quality`)."""
