"""Stage ②: frames in, face observations (landmarks, blendshapes, pose matrix) out."""

from vcam_me.tracking.mediapipe_tracker import FaceTracker, observations_from_result

__all__ = ["FaceTracker", "observations_from_result"]
