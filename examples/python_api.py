import videorep

path = "../shared/data/davis-sample/{}/480p/blackswan/{:05d}.{}"  # a DAVIS-2016 sequence
frames = [path.format("JPEGImages", t, "jpg") for t in range(10)]  # its first 10 frames
truth = [videorep.read_mask(path.format("Annotations", t, "png")) for t in range(10)]
encoder = videorep.load_encoder("dinov2_vits14_imgfocus")  # offline DINOv2 ViT-S/14, frozen
feats = videorep.extract_features(encoder, frames, size=(224, 392), batch=5)
masks = videorep.propagate(feats, truth[0], preset="dino-paper-params")  # [T, H, W] object indices
print("features", tuple(feats.tokens.shape), "grid", feats.grid)
print(f"J&F {videorep.davis_jf(masks, truth):.3f}")
