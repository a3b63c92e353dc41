"""Generation for users: the Pipeline (condition -> stage 1 -> stage 2 -> decode), sample
directories and the editing operations on a sample's point cloud."""
