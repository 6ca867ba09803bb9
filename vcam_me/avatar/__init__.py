"""Avatar stage: one portrait photo → an avatar folder; ExpressionState → RGB frame.

Public surface::

    read_photo(path) -> (H, W, 3) uint8 RGB
    create_avatar(photo_rgb, faces, out_dir, *, overwrite=False, min_face_px=96, source="") -> Avatar
    Avatar.load(folder) -> Avatar
    AUBasis.load(path=None) -> AUBasis                  # models/au_basis.npz, hash-checked
    AvatarRenderer.create(avatar, size=(1280, 720), options=AvatarOptions(), basis=None)
    AvatarRenderer.render(state: ExpressionState) -> (H, W, 3) uint8 RGB
"""

from vcam_me.avatar.avatar import MIN_FACE_PX, Avatar, create_avatar, read_photo, save_avatar
from vcam_me.avatar.basis import AUBasis, state_features
from vcam_me.avatar.renderer import AvatarRenderer, frame_portrait

__all__ = [
    "MIN_FACE_PX",
    "AUBasis",
    "Avatar",
    "AvatarRenderer",
    "create_avatar",
    "frame_portrait",
    "read_photo",
    "save_avatar",
    "state_features",
]
