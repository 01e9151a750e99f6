#!/usr/bin/python3
"""Peers and data for the models benchmarks, run with Debian's /usr/bin/python3:

  peers.py train-step THREADS BATCH PATCH FILTERS DEPTH CLASSES STEPS
      PyTorch training step of the same U-Net as models/src/networks.cc; prints ms/step.
  peers.py textures OUT_DIR SEED
      3-class mosaic of skimage's brick, gravel and grass textures (exact ground truth) and
      scribbles of 5k and 50k pixels: image.tif, truth.tif, scribbles_5k.tif, scribbles_50k.tif
  peers.py rf OUT_DIR SCRIBBLES.tif
      ilastik-style peer: multiscale features + random forest; prints mean Dice vs truth.
  peers.py camera OUT_DIR SEED
      skimage's camera image with Gaussian noise sigma 25: clean.tif, noisy.tif (float32)
  peers.py nlmeans OUT_DIR
      skimage NL-means with estimated sigma on noisy.tif; prints PSNR vs clean.
  peers.py psnr OUT_DIR RESULT.tif
      prints PSNR of RESULT.tif vs clean.tif (data range 255).
"""
import sys
import time

import numpy as np
from PIL import Image


def save_tif(path, array):
    Image.fromarray(array).save(path)


def load_tif(path):
    return np.array(Image.open(path))


def dice(pred, truth, classes):
    scores = []
    for c in classes:
        p, t = pred == c, truth == c
        denom = p.sum() + t.sum()
        scores.append(2.0 * (p & t).sum() / denom if denom else 1.0)
    return float(np.mean(scores))


def train_step(threads, batch, patch, filters, depth, classes, steps):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    torch.set_num_threads(threads)
    torch.manual_seed(0)

    def block(i, o):
        return nn.Sequential(
            nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.LeakyReLU(0.01),
            nn.Conv2d(o, o, 3, padding=1), nn.BatchNorm2d(o), nn.LeakyReLU(0.01))

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.down = nn.ModuleList(block(1 if l == 0 else filters << (l - 1), filters << l)
                                      for l in range(depth + 1))
            self.up = nn.ModuleList(nn.ConvTranspose2d(filters << l, filters << (l - 1), 2, stride=2)
                                    for l in range(depth, 0, -1))
            self.merge = nn.ModuleList(block(2 * (filters << (l - 1)), filters << (l - 1))
                                       for l in range(depth, 0, -1))
            self.head = nn.Conv2d(filters, classes, 1)

        def forward(self, x):
            skips = []
            for l, d in enumerate(self.down):
                if l > 0:
                    x = F.max_pool2d(x, 2)
                x = d(x)
                skips.append(x)
            for i, (u, m) in enumerate(zip(self.up, self.merge)):
                x = m(torch.cat([u(x), skips[-2 - i]], 1))
            return self.head(x)

    def loss_fn(logits, target):  # CE + soft Dice, everything labelled
        ce = F.cross_entropy(logits, target)
        probs = torch.softmax(logits, 1)
        onehot = F.one_hot(target, classes).movedim(-1, 1).float()
        dims = (0, 2, 3)
        d = (2 * (probs * onehot).sum(dims) + 1e-5) / (probs.sum(dims) + onehot.sum(dims) + 1e-5)
        return ce + 1 - d.mean()

    net = UNet()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=3e-5)
    x = torch.randn(batch, 1, patch, patch)
    t = torch.randint(0, classes, (batch, patch, patch))
    for i in range(steps + 3):
        if i == 3:
            start = time.perf_counter()
        loss = loss_fn(net(x), t)
        opt.zero_grad()
        loss.backward()
        opt.step()
    print("%.3f" % ((time.perf_counter() - start) * 1000 / steps))


def scribble(truth, budget, rng, radius):
    """Brush strokes kept inside one class, about budget/3 pixels per class."""
    h, w = truth.shape
    out = np.zeros_like(truth)
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    disc = yy ** 2 + xx ** 2 <= radius ** 2
    for c in (1, 2, 3):
        painted = 0
        for _ in range(20000):
            if painted >= budget // 3:
                break
            y, x = rng.integers(radius, h - radius), rng.integers(radius, w - radius)
            angle = rng.uniform(0, 2 * np.pi)
            for _ in range(300):
                iy, ix = int(round(y)), int(round(x))
                if not (radius <= iy < h - radius and radius <= ix < w - radius):
                    break
                win = (slice(iy - radius, iy + radius + 1), slice(ix - radius, ix + radius + 1))
                if not (truth[win][disc] == c).all() or painted >= budget // 3:
                    break
                new = disc & (out[win] == 0)
                out[win][new] = c
                painted += int(new.sum())
                angle += rng.uniform(-0.3, 0.3)
                y += 2 * np.sin(angle)
                x += 2 * np.cos(angle)
    return out


def textures(out, seed):
    from skimage import data
    rng = np.random.default_rng(seed)
    tex = [data.brick(), data.gravel(), data.grass()]
    size = 512
    # Regions: a Voronoi partition of 12 seeds, four per class.
    seeds = rng.uniform(0, size, (12, 2))
    classes = np.array([1, 2, 3] * 4)
    yy, xx = np.mgrid[0:size, 0:size]
    d = (yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2
    truth = classes[d.argmin(-1)].astype(np.uint8)
    image = np.zeros((size, size), np.uint8)
    for c in (1, 2, 3):
        image[truth == c] = tex[c - 1][:size, :size][truth == c]
    save_tif(f"{out}/image.tif", image)
    save_tif(f"{out}/truth.tif", truth)
    for budget, name in ((5000, "5k"), (50000, "50k")):
        s = scribble(truth, budget, np.random.default_rng(seed + budget), 3 if budget > 10000 else 2)
        save_tif(f"{out}/scribbles_{name}.tif", s)
        print(f"scribbles_{name}: {int((s > 0).sum())} px")


def rf(out, scribbles_path):
    from skimage.feature import multiscale_basic_features
    from sklearn.ensemble import RandomForestClassifier
    image = load_tif(f"{out}/image.tif").astype(np.float32)
    truth = load_tif(f"{out}/truth.tif")
    labels = load_tif(scribbles_path)
    features = multiscale_basic_features(image, intensity=True, edges=True, texture=True,
                                         sigma_min=1, sigma_max=16)
    clf = RandomForestClassifier(n_estimators=100, n_jobs=-1, random_state=0)  # ilastik's 100 trees
    mask = labels > 0
    clf.fit(features[mask], labels[mask])
    pred = clf.predict(features.reshape(-1, features.shape[-1])).reshape(truth.shape)
    print("%.4f" % dice(pred, truth, (1, 2, 3)))


def camera(out, seed):
    from skimage import data
    clean = data.camera().astype(np.float32)
    noisy = clean + np.random.default_rng(seed).normal(0, 25, clean.shape).astype(np.float32)
    save_tif(f"{out}/clean.tif", clean)
    save_tif(f"{out}/noisy.tif", noisy)
    print("noisy PSNR %.2f" % psnr(noisy, clean))


def psnr(result, clean):
    mse = np.mean((result.astype(np.float64) - clean) ** 2)
    return 10 * np.log10(255.0 ** 2 / mse)


def nlmeans(out):
    from skimage.restoration import denoise_nl_means, estimate_sigma
    noisy = load_tif(f"{out}/noisy.tif")
    clean = load_tif(f"{out}/clean.tif")
    sigma = float(estimate_sigma(noisy))
    result = denoise_nl_means(noisy, h=0.8 * sigma, sigma=sigma, fast_mode=True,
                              patch_size=5, patch_distance=6)
    print("%.2f" % psnr(result, clean))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "train-step":
        train_step(*map(int, args))
    elif cmd == "textures":
        textures(args[0], int(args[1]))
    elif cmd == "rf":
        rf(args[0], args[1])
    elif cmd == "camera":
        camera(args[0], int(args[1]))
    elif cmd == "nlmeans":
        nlmeans(args[0])
    elif cmd == "psnr":
        print("%.2f" % psnr(load_tif(args[1]), load_tif(f"{args[0]}/clean.tif")))
    else:
        sys.exit(__doc__)
