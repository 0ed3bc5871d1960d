"""The embedded, procedurally generated city: world, surfaces, rendering and the dataset generator."""
