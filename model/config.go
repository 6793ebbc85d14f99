package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
)

// Config is a GPT-2 configuration, read from and written to a Hugging Face config.json with
// the field names of transformers.GPT2Config.
type Config struct {
	// VocabSize is V, the number of token ids.
	VocabSize int `json:"vocab_size"`
	// NPositions is the context length: the most tokens a sequence may hold.
	NPositions int `json:"n_positions"`
	// NEmbd is C, the width of the residual stream.
	NEmbd int `json:"n_embd"`
	// NLayer is the number of transformer blocks.
	NLayer int `json:"n_layer"`
	// NHead is NH, the number of attention heads; NEmbd must be a multiple of it.
	NHead int `json:"n_head"`
	// BOSTokenID and EOSTokenID are the beginning- and end-of-text ids (50256 for GPT-2).
	BOSTokenID int `json:"bos_token_id"`
	EOSTokenID int `json:"eos_token_id"`
}

// hfConfig is config.json with the fields that must hold a supported value. Pointers tell an
// absent field (which takes GPT2Config's default) from a present one.
type hfConfig struct {
	Config
	ModelType                  string   `json:"model_type"`
	NCtx                       *int     `json:"n_ctx,omitempty"`
	NInner                     *int     `json:"n_inner"`
	ActivationFunction         *string  `json:"activation_function,omitempty"`
	LayerNormEpsilon           *float64 `json:"layer_norm_epsilon,omitempty"`
	TieWordEmbeddings          *bool    `json:"tie_word_embeddings,omitempty"`
	ScaleAttnWeights           *bool    `json:"scale_attn_weights,omitempty"`
	ScaleAttnByInverseLayerIdx *bool    `json:"scale_attn_by_inverse_layer_idx,omitempty"`
	AddCrossAttention          *bool    `json:"add_cross_attention,omitempty"`
}

// ErrUnsupported is wrapped by errors for a config.json or checkpoint that is valid for
// Transformers but describes a model this package does not implement.
var ErrUnsupported = errors.New("unsupported model")

// ReadConfig reads config.json from fsys. Absent fields take GPT2Config's defaults (GPT-2 124M).
// It fails for a model_type other than "gpt2", an activation other than gelu_new (or its alias
// gelu_pytorch_tanh), a layer_norm_epsilon other than 1e-5, untied embeddings, n_inner other
// than 4*n_embd, unscaled or layer-scaled attention, cross-attention, or inconsistent sizes; the
// error names the field.
func ReadConfig(fsys fs.FS) (Config, error) {
	data, err := fs.ReadFile(fsys, "config.json")
	if err != nil {
		return Config{}, fmt.Errorf("model: %w", err)
	}
	return ParseConfig(data)
}

// ParseConfig parses the contents of a config.json; see ReadConfig.
func ParseConfig(data []byte) (Config, error) {
	h := hfConfig{Config: Config{VocabSize: 50257, NPositions: 1024, NEmbd: 768, NLayer: 12, NHead: 12,
		BOSTokenID: 50256, EOSTokenID: 50256}}
	if err := json.Unmarshal(data, &h); err != nil {
		return Config{}, fmt.Errorf("model: config.json: %w", err)
	}
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("model: config.json: %s = %v, want %s: %w", field, v, want, ErrUnsupported)
	}
	switch {
	case h.ModelType != "gpt2":
		return Config{}, bad("model_type", fmt.Sprintf("%q", h.ModelType), `"gpt2"`)
	case h.ActivationFunction != nil && *h.ActivationFunction != "gelu_new" && *h.ActivationFunction != "gelu_pytorch_tanh":
		return Config{}, bad("activation_function", *h.ActivationFunction, "gelu_new")
	case h.LayerNormEpsilon != nil && *h.LayerNormEpsilon != 1e-5:
		return Config{}, bad("layer_norm_epsilon", *h.LayerNormEpsilon, "1e-05")
	case h.TieWordEmbeddings != nil && !*h.TieWordEmbeddings:
		return Config{}, bad("tie_word_embeddings", false, "true")
	case h.NInner != nil && *h.NInner != 4*h.NEmbd:
		return Config{}, bad("n_inner", *h.NInner, fmt.Sprintf("null or 4*n_embd = %d", 4*h.NEmbd))
	case h.ScaleAttnWeights != nil && !*h.ScaleAttnWeights:
		return Config{}, bad("scale_attn_weights", false, "true")
	case h.ScaleAttnByInverseLayerIdx != nil && *h.ScaleAttnByInverseLayerIdx:
		return Config{}, bad("scale_attn_by_inverse_layer_idx", true, "false")
	case h.AddCrossAttention != nil && *h.AddCrossAttention:
		return Config{}, bad("add_cross_attention", true, "false")
	}
	if err := h.Config.Validate(); err != nil {
		return Config{}, fmt.Errorf("model: config.json: %w", err)
	}
	return h.Config, nil
}

// Validate checks that the sizes are positive and consistent; the error names the field.
func (c Config) Validate() error {
	const limit = 1 << 20 // no real GPT-2 dimension comes near; keeps products far from overflow
	for _, f := range []struct {
		name string
		v    int
	}{{"vocab_size", c.VocabSize}, {"n_positions", c.NPositions}, {"n_embd", c.NEmbd}, {"n_layer", c.NLayer}, {"n_head", c.NHead}} {
		if f.v <= 0 || f.v > limit {
			return fmt.Errorf("%s = %d, want 1..%d", f.name, f.v, limit)
		}
	}
	if c.NEmbd%c.NHead != 0 {
		return fmt.Errorf("n_embd = %d is not a multiple of n_head = %d", c.NEmbd, c.NHead)
	}
	if c.BOSTokenID < 0 || c.BOSTokenID >= c.VocabSize {
		return fmt.Errorf("bos_token_id = %d, want 0..%d", c.BOSTokenID, c.VocabSize-1)
	}
	if c.EOSTokenID < 0 || c.EOSTokenID >= c.VocabSize {
		return fmt.Errorf("eos_token_id = %d, want 0..%d", c.EOSTokenID, c.VocabSize-1)
	}
	return nil
}

// NumParams is the number of parameters (lm_head tied to wte, counted once).
func (c Config) NumParams() int {
	n := 0
	for _, t := range layout(c) {
		n += t.numel()
	}
	return n
}

// MarshalJSON writes a config.json that transformers.GPT2LMHeadModel loads unchanged.
func (c Config) MarshalJSON() ([]byte, error) {
	type plain Config // without this method
	return json.MarshalIndent(struct {
		Architectures []string `json:"architectures"`
		ModelType     string   `json:"model_type"`
		plain
		NCtx               int     `json:"n_ctx"`
		NInner             *int    `json:"n_inner"`
		ActivationFunction string  `json:"activation_function"`
		LayerNormEpsilon   float64 `json:"layer_norm_epsilon"`
		ResidPdrop         float64 `json:"resid_pdrop"`
		EmbdPdrop          float64 `json:"embd_pdrop"`
		AttnPdrop          float64 `json:"attn_pdrop"`
		InitializerRange   float64 `json:"initializer_range"`
		TieWordEmbeddings  bool    `json:"tie_word_embeddings"`
		ScaleAttnWeights   bool    `json:"scale_attn_weights"`
		TorchDtype         string  `json:"torch_dtype"`
	}{
		Architectures: []string{"GPT2LMHeadModel"}, ModelType: "gpt2", plain: plain(c), NCtx: c.NPositions,
		ActivationFunction: "gelu_new", LayerNormEpsilon: 1e-5, InitializerRange: 0.02,
		TieWordEmbeddings: true, ScaleAttnWeights: true, TorchDtype: "float32",
	}, "", "  ")
}
