"""What every stage shares and nothing else: errors, atomic writes and checksums, the run directory and presets,
shards and claims, the generate-check-retry loop, the categories and splits, provenance. It imports no other
package of this project, so every package can import it."""
