"""d2l's LeNet chapter, d2l 1.0 edition (d2l-en 7.6), on tinyalex.

    python examples/d2l/lenet_v1.py           # batch 128, lr 0.1, 10 epochs, lazy layers

The chapter's PyTorch code as the book prints it (the PyTorch tab); only the three
imports differ. The Trainer prints nothing, as in the book: its ProgressBoard goes
to lenet_v1_board.png in the current folder. The last lines, marked as not in the
book, print the final validation accuracy that the board plots.
"""

import tinyalex as torch
from tinyalex import nn
from tinyalex import d2l


def init_cnn(module):  #@save
    """Xavier initialisation for every convolution and dense layer."""
    if type(module) == nn.Linear or type(module) == nn.Conv2d:
        nn.init.xavier_uniform_(module.weight)


class LeNet(d2l.Classifier):  #@save
    """LeNet-5, its input sizes left to the lazy layers."""
    def __init__(self, lr=0.1, num_classes=10):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(
            nn.LazyConv2d(6, kernel_size=5, padding=2), nn.Sigmoid(),
            nn.AvgPool2d(kernel_size=2, stride=2),
            nn.LazyConv2d(16, kernel_size=5), nn.Sigmoid(),
            nn.AvgPool2d(kernel_size=2, stride=2),
            nn.Flatten(),
            nn.LazyLinear(120), nn.Sigmoid(),
            nn.LazyLinear(84), nn.Sigmoid(),
            nn.LazyLinear(num_classes))


@d2l.add_to_class(d2l.Classifier)  #@save
def layer_summary(self, X_shape):
    X = d2l.randn(*X_shape)
    for layer in self.net:
        X = layer(X)
        print(layer.__class__.__name__, 'output shape:\t', X.shape)


model = LeNet()
model.layer_summary((1, 1, 28, 28))

trainer = d2l.Trainer(max_epochs=10, num_gpus=1)
data = d2l.FashionMNIST(batch_size=128)
model = LeNet(lr=0.1)
model.apply_init([next(iter(data.get_dataloader(True)))[0]], init_cnn)
trainer.fit(model, data)

# Not in the book, which reads the result off the board: the validation accuracy.
with torch.no_grad():
    model.eval()
    right = seen = 0
    for X, y in data.val_dataloader():
        right += float(model.accuracy(model(X), y, averaged=False).sum())
        seen += y.numel()
print(f'val acc {right / seen:.3f} after {trainer.max_epochs} epochs')
