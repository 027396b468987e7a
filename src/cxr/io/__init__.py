"""Files and images: atomic output writes, and reading X-ray and mask files into 8-bit pixels."""
