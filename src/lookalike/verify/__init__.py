"""Verifying that two images are the same photo (the second stage of the duplicate finder).

The index's k-NN proposes candidate pairs from CNN descriptors; these modules decide whether a
candidate is the same photo after edits (`near`) or only another shot of the same scene:

- `phash`: a 64-bit DCT perceptual hash (and the hash of the mirrored image), computed at index
  time from the same decoded pixels the CNN sees and stored in the catalog. Cheap; holds under
  resizing, recompression, colour and brightness changes; breaks on crops, borders, flips of
  asymmetric scenes and rotations.
- `geometry`: local features (ORB) matched between the two files and a similarity transform
  fitted with RANSAC, then a dense check of the aligned low-resolution images: one image must
  lie inside the other (a crop, a border, a caption, a flip or a small rotation), not merely
  overlap it (another framing of the scene), and the aligned pixels must agree (another shot
  from a slightly different place disagrees where the parallax moves things).
"""
