//! One dataset's metadata document with the fields of the National
//! Development Council's dataset metadata (data.gov.tw 資料集詮釋資料):
//! title, description, publisher, licence, cost, update frequency, fields
//! with units, encoding, file formats, spatial and temporal coverage,
//! contact, keywords; each text in English and zh-TW. `ndc_labels` gives the
//! portal's Chinese name of each field, for the person filling in the form.

use citygauge_domain::Kind;
use serde_json::{json, Value};

use super::texts::{self, Text, LICENSE_NAME, LICENSE_URL};
use super::Coverage;
use crate::open_data::OpenDataConfig;

fn both(text: Text) -> Value {
    json!({"en": text.en, "zh-TW": text.zh})
}

/// The dataset's stable identifier.
pub fn identifier(kind: Kind) -> String {
    format!("citygauge-{}", kind.as_str().replace('_', "-"))
}

pub fn document(config: &OpenDataConfig, kind: Kind, coverage: &Coverage, base: &str, tz: chrono_tz::Tz) -> Value {
    let text = texts::dataset(kind);
    let fields: Vec<Value> = texts::columns(kind)
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.field_type,
                "unit": if c.unit.is_empty() { Value::Null } else { Value::from(c.unit) },
                "description": both(c.description),
            })
        })
        .collect();
    json!({
        "identifier": identifier(kind),
        "kind": kind.as_str(),
        "title": both(text.title),
        "description": both(text.description),
        "publisher": {"en": config.opendata_publisher, "zh-TW": config.opendata_publisher_zh},
        "license": {"name": both(LICENSE_NAME), "url": LICENSE_URL},
        "cost": {"en": "free", "zh-TW": "免費"},
        "update_frequency": both(text.frequency),
        "fields": fields,
        "encoding": "UTF-8",
        "formats": ["CSV", "JSON"],
        "distribution": {
            "csv": format!("{base}/opendata/v1/{kind}/{{YYYY-MM-DD}}.csv"),
            "json": format!("{base}/opendata/v1/{kind}/{{YYYY-MM-DD}}.json"),
            "days": format!("{base}/opendata/v1/datasets/{kind}/days"),
            "sensorthings": format!("{base}/sta/v1.1"),
        },
        "spatial_coverage": {
            "bbox": coverage.bbox,
            "crs": "EPSG:4326",
            "sensors": coverage.sensors,
        },
        "temporal_coverage": {
            "start": coverage.first_day,
            "end": coverage.last_day,
            "timezone": tz.name(),
        },
        "contact": {"name": config.opendata_contact_name, "email": config.opendata_contact_email},
        "keywords": {
            "en": text.keywords.iter().map(|k| k.en).collect::<Vec<_>>(),
            "zh-TW": text.keywords.iter().map(|k| k.zh).collect::<Vec<_>>(),
        },
        "ndc_labels": {
            "title": "資料集名稱",
            "description": "資料集描述",
            "publisher": "提供機關",
            "license": "授權方式",
            "cost": "計費方式",
            "update_frequency": "更新頻率",
            "fields": "主要欄位說明",
            "encoding": "編碼格式",
            "formats": "檔案格式",
            "distribution": "資料資源下載網址",
            "spatial_coverage": "資料涵蓋範圍（空間）",
            "temporal_coverage": "資料涵蓋範圍（時間）",
            "contact": "聯絡人",
            "keywords": "標籤",
        },
    })
}
