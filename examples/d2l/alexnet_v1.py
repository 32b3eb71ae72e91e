"""d2l's AlexNet chapter, d2l 1.0 edition (d2l-en 8.1), on tinyalex.

    python examples/d2l/alexnet_v1.py         # batch 128, lr 0.01, 10 epochs, 224x224

The chapter's PyTorch code as the book prints it (the PyTorch tab); only the three
imports differ. The full run is a GPU's job; Trainer(num_gpus=1) uses cuda:0 when
CuPy sees a GPU, else the CPU. The Trainer prints nothing, as in the book: its
ProgressBoard goes to alexnet_v1_board.png in the current folder. The last lines,
marked as not in the book, print the final validation accuracy.
"""

import tinyalex as torch
from tinyalex import nn
from tinyalex import d2l


class AlexNet(d2l.Classifier):
    def __init__(self, lr=0.1, num_classes=10):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(
            nn.LazyConv2d(96, kernel_size=11, stride=4, padding=1),
            nn.ReLU(), nn.MaxPool2d(kernel_size=3, stride=2),
            nn.LazyConv2d(256, kernel_size=5, padding=2), nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.LazyConv2d(384, kernel_size=3, padding=1), nn.ReLU(),
            nn.LazyConv2d(384, kernel_size=3, padding=1), nn.ReLU(),
            nn.LazyConv2d(256, kernel_size=3, padding=1), nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2), nn.Flatten(),
            nn.LazyLinear(4096), nn.ReLU(), nn.Dropout(p=0.5),
            nn.LazyLinear(4096), nn.ReLU(),nn.Dropout(p=0.5),
            nn.LazyLinear(num_classes))
        # before the first forward the layers are still lazy: this initialises
        # nothing, as in PyTorch, and the layers keep PyTorch's default init
        self.net.apply(d2l.init_cnn)


AlexNet().layer_summary((1, 1, 224, 224))

model = AlexNet(lr=0.01)
data = d2l.FashionMNIST(batch_size=128, resize=(224, 224))
trainer = d2l.Trainer(max_epochs=10, num_gpus=1)
trainer.fit(model, data)

# Not in the book, which reads the result off the board: the validation accuracy.
with torch.no_grad():
    model.eval()
    right = seen = 0
    for X, y in data.val_dataloader():
        X, y = trainer.prepare_batch([X, y])
        right += float(model.accuracy(model(X), y, averaged=False).sum())
        seen += y.numel()
print(f'val acc {right / seen:.3f} after {trainer.max_epochs} epochs')
