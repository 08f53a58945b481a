"""The Models page parts: model rows, their actions and the playground."""
