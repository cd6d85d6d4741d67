"""Plain types shared by every layer: money, time, enums. Standard library only."""
