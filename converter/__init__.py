"""sensorium-zarr converter: per-trial Sensorium 2023 .npy trees into Zarr v3 stores."""
