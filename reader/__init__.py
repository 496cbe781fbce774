"""sensorium-zarr reader: lazy, standardized access to converted Sensorium 2023 stores."""
