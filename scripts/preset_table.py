"""Print docs/presets.md's preset table, generated from conf/preset.

    python scripts/preset_table.py
"""

from arnn.presets import preset_table

if __name__ == "__main__":
    print(preset_table())
