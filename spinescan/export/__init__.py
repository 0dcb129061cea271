"""Export of trained runs to ONNX: conversion, parity, int8, model cards and the standalone predictor."""
