"""The Configure page parts: the form, the saved draft, the live estimate and the base-model picker."""
