"""The vocabularies of the structure families: which materials, defects and supports each one
builds. A module of its own, free of heavy imports, so config validation (hrtem_wf.config) checks
a block against the same names the builders use without importing czone or ASE."""

# Elemental FCC metals the particle builder knows (lattice: fcc).
FCC_METALS = ("Au", "Ag", "Cu", "Pt", "Pd", "Al", "Ni", "Ir", "Rh", "Pb")
# Planar defects on the FCC {111} planes, and on the wurtzite basal plane.
DEFECT_KINDS = ("twin", "stacking_fault")
WURTZITE_DEFECT_KINDS = ("stacking_fault",)
GRAIN_BOUNDARY_KINDS = ("rotation_about_111", "random_rotation")
# 2H transition-metal dichalcogenide flakes (family: flake) and what they may lie on.
FLAKE_MATERIALS = ("MoS2", "MoSe2", "WS2", "WSe2")
FLAKE_SUPPORTS = ("none", "graphene")
SUBSTRATE_ELEMENTS = {"amorphous_carbon": "C"}  # substrate material -> its element
