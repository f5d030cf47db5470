"""Region label maps: one uint8 id per pixel, shared by the synthetic faces, the pairs and the benchmark.

The synthetic generator paints these ids (`data/raw/labels/`); `pairs` warps them with the
reference; evaluation measures each region's colour error with them. Real images have none.
"""

REGIONS: dict[int, str] = {
    0: "background",
    1: "hair",
    2: "skin",
    3: "sclera",
    4: "iris_left",  # image-left eye
    5: "iris_right",  # image-right eye
    6: "pupil",
    7: "highlight",
    8: "eyebrow",
    9: "mouth",
    10: "teeth",
    11: "tongue",
    12: "blush",
    13: "clothes",
    14: "collar",
}
REGION_IDS = {name: idx for idx, name in REGIONS.items()}
# A pixel of no known region: one whose region a text-training sample blanked or recoloured in the
# reference, or, in the label maps that `clean.eye_labels` detects on real faces, anything but the irises.
NO_REGION = len(REGIONS)

# The regions whose colour the benchmark scores (evaluation: region CIEDE2000, heterochromia).
COLOUR_REGIONS = {name: REGION_IDS[name] for name in ("hair", "skin", "iris_left", "iris_right", "clothes")}
